"""Calico's selector language: parse, canonical form, unique ids, fast evaluation, and a
label index answering "which labelled objects match which selectors" incrementally.
"""

from felis.selector.errors import SelectorError
from felis.selector.index import LabelIndex
from felis.selector.selector import Selector, parse
from felis.selector.uid import selector_uid

__all__ = ["LabelIndex", "Selector", "SelectorError", "parse", "selector_uid"]
