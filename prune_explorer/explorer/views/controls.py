"""Building blocks of the views' controls: a button wired to an action, and a file-path box (ipywidgets).

Every view builds its buttons and path boxes through these two functions, so they look and behave the same
(auto width, a CSS class the browser tests and the stylesheet find them by, a tooltip saying what happens).
"""

from __future__ import annotations

from typing import Callable, Optional

import ipywidgets as widgets

__all__ = ["action_button", "path_box"]


def action_button(description: str, icon: str, tooltip: str, css_class: str, on_click: Callable[[], object],
                  button_style: str = "") -> widgets.Button:
    """A button that calls ``on_click()`` (no arguments) when clicked.

    >>> clicked = []
    >>> b = action_button("Save", "save", "write the file", "pe-save", lambda: clicked.append(1))
    >>> b.click(); clicked, b._dom_classes
    ([1], ('pe-save',))
    """
    button = widgets.Button(description=description, icon=icon, tooltip=tooltip, button_style=button_style,
                            layout=widgets.Layout(width="auto"))
    button.add_class(css_class)
    button.on_click(lambda _: on_click())
    return button


def path_box(value: str, css_class: str, description: Optional[str] = "file") -> widgets.Text:
    """A text box for a file path that shares its row with a button (grows, shrinks, never overflows).

    >>> path_box("model.pth", "pe-save-path").value
    'model.pth'
    """
    box = widgets.Text(value=value, description=description,
                       layout=widgets.Layout(flex="1 1 200px", min_width="140px", max_width="360px"),
                       style={"description_width": "32px"})
    box.add_class(css_class)
    return box
