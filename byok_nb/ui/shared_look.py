"""One Layout, and one Style per widget kind, shared by the fixed widgets of the app's shell.

ipywidgets gives every widget a Layout model and most widgets a Style model of their own: each is
a comm the kernel opens and a model the browser builds on every Voila visit, though the app's
header, navigation, status lines, buttons and boxes never change their layout or style. Built
through one :class:`SharedLook`, they share them (the admin app showing its Models page: 38 widget models -> 17).

A widget built here must never have ``.layout.*`` or ``.style.*`` set: that would change every
widget sharing them. A widget that is shown/hidden or restyled keeps its own (the default).
"""
from __future__ import annotations

from typing import Any, TypeVar

import ipywidgets as widgets

W = TypeVar("W", bound=widgets.DOMWidget)


class SharedLook:
    """``look(widgets.HTML, "<h2>Models</h2>")`` builds the widget on the shared layout/style.

    >>> look = SharedLook()
    >>> a, b = look(widgets.HTML), look(widgets.HTML)
    >>> a.layout is b.layout and a.style is b.style
    True
    """

    def __init__(self) -> None:
        self.layout = widgets.Layout()
        self._styles: dict[type, Any] = {}

    def style_for(self, kind: type) -> dict[str, Any]:
        """The shared ``layout`` (and ``style``, when ``kind`` has one) as constructor arguments."""
        shared: dict[str, Any] = {"layout": self.layout}
        trait = kind.class_traits().get("style")
        klass = getattr(trait, "klass", None)
        if isinstance(klass, type):
            if klass not in self._styles:
                self._styles[klass] = klass()
            shared["style"] = self._styles[klass]
        return shared

    def __call__(self, kind: type[W], *args: Any, **kwargs: Any) -> W:
        return kind(*args, **self.style_for(kind), **kwargs)
