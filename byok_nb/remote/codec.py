"""JSON for the remote session: the arguments a notebook sends and the results the service returns.

A value is plain JSON where JSON has the type (None, bool, int, finite float, str, list, dict with
text keys); anything else is a one-key object naming its type, e.g. ``{"$decimal": "0.0000025"}``:

* ``$decimal``, ``$datetime`` / ``$date`` (ISO text), ``$float`` (``nan``, ``inf``, ``-inf``),
  ``$bytes`` (base64: images for ``generate``), ``$tuple``, ``$dict`` (a dict whose keys are not
  all text, or that could be mistaken for a tag: key/value pairs);
* ``$model``: a byok_nb domain class (``CustomModel``, ``Completion``, ``Workflow`` ...) by name
  and its fields, rebuilt as the same class. Only the classes of :mod:`byok_nb.core.domain` can be
  named: a decoder never imports or instantiates anything else;
* ``$picker`` (a ``PickerResult``), ``$chunk`` / ``$usage`` (a streamed ``ChatChunk`` and its
  totals), ``$frame`` (a pandas DataFrame: column order, dtypes, index, so a view built on it
  renders as on the embedded session's);
* ``$file``: the bytes of a file read on the client (``seed_assignments_csv``), rebuilt as an open
  in-memory file, never as a path on the service's machine;
* ``$secret``: a ``SecretStr`` (a draft's key). Only ever encoded with ``secrets=True``, which the
  client passes for the arguments it sends; the service encodes its results with the default,
  so a secret in a result is an error, never a byte on the wire.

Tags are self-describing, so neither side needs a method's annotations to decode.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import math
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, SecretStr

from ..core import domain
from ..core.errors import InvalidRequest
from ..services.chat_stream import ChatChunk, ChatUsage

__all__ = ["SecretInResult", "decode", "encode"]

# The classes a "$model" tag may name: the pydantic models of the domain module, and nothing else.
_MODELS: dict[str, type[BaseModel]] = {
    name: value for name, value in vars(domain).items()
    if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == domain.__name__
}
_SPECIAL_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class SecretInResult(TypeError):
    """A secret reached an encoder that must not send one (a bug: surfaces return masked views)."""


# -- encoding --------------------------------------------------------------------------------------

def encode(value: Any, *, secrets: bool = False) -> Any:
    """``value`` as JSON-ready data (see the module doc). ``secrets=True`` lets a ``SecretStr``
    through (the client's arguments only); otherwise one raises :class:`SecretInResult`."""
    if value is None or isinstance(value, (bool, int, str)):
        if type(value) in (bool, int, str) or value is None:
            return value
        return _encode_other(value, secrets)   # an int/str subclass (an enum, a numpy bool...)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, list):
        return [encode(v, secrets=secrets) for v in value]
    if isinstance(value, domain.PickerResult):
        return {"$picker": {str(k): encode(list(v), secrets=secrets) for k, v in value.items()}}
    if type(value) is dict:
        return _encode_dict(value, secrets)
    return _encode_other(value, secrets)


def _encode_dict(value: dict[Any, Any], secrets: bool) -> Any:
    if all(isinstance(k, str) for k in value) and not any(k.startswith("$") for k in value):
        return {k: encode(v, secrets=secrets) for k, v in value.items()}
    return {"$dict": [[encode(k, secrets=secrets), encode(v, secrets=secrets)] for k, v in value.items()]}


def _encode_other(value: Any, secrets: bool) -> Any:
    if isinstance(value, SecretStr):
        if not secrets:
            raise SecretInResult("a secret value reached a result encoder")
        return {"$secret": value.get_secret_value()}
    if isinstance(value, BaseModel):
        name = type(value).__name__
        if _MODELS.get(name) is not type(value):
            raise TypeError(f"cannot encode a {type(value).__qualname__}")
        return {"$model": name, "data": encode(value.model_dump(by_alias=True), secrets=secrets)}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        if _is_missing(value):          # pandas' NaT is a datetime subclass
            return None
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return {"$tuple": [encode(v, secrets=secrets) for v in value]}
    if isinstance(value, tuple):        # a named tuple (e.g. a token identity): its fields
        return encode(dict(value._asdict()), secrets=secrets)   # type: ignore[attr-defined]
    if isinstance(value, dict):         # a dict subclass other than PickerResult
        return _encode_dict(dict(value), secrets)
    if isinstance(value, ChatChunk):
        return {"$chunk": {f.name: encode(getattr(value, f.name), secrets=secrets)
                           for f in dataclasses.fields(value)}}
    if isinstance(value, ChatUsage):
        return {"$usage": [value.input_tokens, value.output_tokens]}
    if isinstance(value, io.IOBase) or hasattr(value, "read"):
        return {"$file": base64.b64encode(_read_all(value)).decode("ascii")}
    pd = sys.modules.get("pandas")
    if pd is not None:
        if isinstance(value, pd.DataFrame):
            return {"$frame": _encode_frame(value, secrets)}
        if value is pd.NA or value is pd.NaT:
            return None
    if type(value).__module__ == "numpy" and hasattr(value, "item"):   # a numpy scalar
        return encode(value.item(), secrets=secrets)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"cannot encode a {type(value).__qualname__}")


def _read_all(handle: Any) -> bytes:
    data = handle.read()
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise InvalidRequest("the file's read() returned neither text nor bytes")


def _is_missing(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and value is pd.NaT


def _encode_frame(frame: Any, secrets: bool) -> dict[str, Any]:
    import pandas as pd

    columns = []
    for position in range(frame.shape[1]):
        columns.append(_encode_series(frame.iloc[:, position], secrets))
    out: dict[str, Any] = {"names": [encode(c, secrets=secrets) for c in frame.columns], "columns": columns}
    index = frame.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None):
        if isinstance(index, pd.MultiIndex):
            raise TypeError("cannot encode a DataFrame with a MultiIndex")
        out["index"] = _encode_series(index.to_series(), secrets)
        out["index_name"] = encode(index.name, secrets=secrets)
    return out


def _encode_series(series: Any, secrets: bool) -> dict[str, Any]:
    """A column as its dtype's name and its values; missing values are None (NaN, NaT and NA
    come back from the dtype)."""
    import numpy as np   # pandas' own dependency

    dtype = series.dtype
    kind = getattr(dtype, "kind", "O")
    plain = isinstance(dtype, np.dtype)   # not a nullable extension dtype (Int64, boolean, Float64)
    values: list[Any]
    if kind == "M":
        values = [None if v is None or _is_missing(v) else v.isoformat() for v in series.tolist()]
    elif kind == "f" and plain:
        values = [v if math.isfinite(v) else (None if math.isnan(v) else encode(v)) for v in series.tolist()]
    elif kind in "biu" and plain:
        values = series.tolist()
    else:
        values = [encode(v, secrets=secrets) for v in series.tolist()]
    return {"dtype": str(dtype), "values": values}


# -- decoding --------------------------------------------------------------------------------------

def decode(data: Any) -> Any:
    """The value :func:`encode` encoded (a ``$model`` rebuilt as its domain class). Malformed data
    is an ``InvalidRequest``."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        raise InvalidRequest(f"cannot decode a {type(data).__name__}")
    tag = next(iter(data), None) if data else None
    if tag is None or not tag.startswith("$"):
        return {k: decode(v) for k, v in data.items()}
    try:
        return _decode_tag(tag, data)
    except InvalidRequest:
        raise
    except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as exc:
        raise InvalidRequest(f"malformed {tag} value: {type(exc).__name__}") from None


def _decode_tag(tag: str, data: dict[str, Any]) -> Any:
    body = data[tag]
    if tag == "$decimal":
        return Decimal(str(body))
    if tag == "$datetime":
        return dt.datetime.fromisoformat(body)
    if tag == "$date":
        return dt.date.fromisoformat(body)
    if tag == "$float":
        return _SPECIAL_FLOATS[body]
    if tag == "$bytes":
        return base64.b64decode(body, validate=True)
    if tag == "$tuple":
        return tuple(decode(v) for v in body)
    if tag == "$dict":
        return {_hashable(decode(k)): decode(v) for k, v in body}
    if tag == "$secret":
        if not isinstance(body, str):
            raise InvalidRequest("a secret is text")
        return SecretStr(body)
    if tag == "$model":
        cls = _MODELS.get(body) if isinstance(body, str) else None
        if cls is None:
            raise InvalidRequest(f"unknown type {body!r}")
        return cls.model_validate(decode(data["data"]))
    if tag == "$picker":
        return domain.PickerResult({str(k): decode(v) for k, v in body.items()})
    if tag == "$chunk":
        fields = {k: decode(v) for k, v in body.items()}
        return ChatChunk(**fields)
    if tag == "$usage":
        return ChatUsage(int(body[0]), int(body[1]))
    if tag == "$file":
        return io.BytesIO(base64.b64decode(body, validate=True))
    if tag == "$frame":
        return _decode_frame(body)
    raise InvalidRequest(f"unknown tag {tag!r}")


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _decode_frame(body: dict[str, Any]) -> Any:
    import pandas as pd

    names = [_hashable(decode(n)) for n in body["names"]]
    columns = [_decode_series(c) for c in body["columns"]]
    index = None
    if "index" in body:
        index = pd.Index(_decode_series(body["index"]), name=decode(body.get("index_name")))
    frame = pd.DataFrame({i: column for i, column in enumerate(columns)})
    frame.columns = pd.Index(names) if names else frame.columns
    if index is not None:   # after the columns, which were built on a default index
        frame.index = index
    return frame


def _decode_series(body: dict[str, Any]) -> Any:
    import pandas as pd

    dtype = body["dtype"]
    raw = body["values"]
    if dtype.startswith("datetime64"):
        utc = "," in dtype    # "datetime64[ns, UTC]": tz-aware
        parsed = pd.to_datetime(pd.Series(raw, dtype=object), utc=utc, format="ISO8601")
        return parsed.astype(dtype)
    values = [decode(v) for v in raw]
    if dtype == "object":
        return pd.Series(values, dtype=object)
    if dtype.startswith("float"):
        return pd.Series([math.nan if v is None else v for v in values], dtype=dtype)
    try:
        return pd.Series(values, dtype=object).astype(dtype)
    except (TypeError, ValueError):     # a dtype this pandas cannot rebuild: keep the values
        return pd.Series(values, dtype=object)
