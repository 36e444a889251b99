"""Every fixed text ShapeWorld can emit in prompts and chains, for building a word-level tokenizer.

A prompt or chain is these fragments joined, plus object names and box numbers; `text_fragments()` covers every
word of them (numbers aside, which the tokenizer adds on its own):

    >>> "three" in " ".join(text_fragments()) and "to the left of" in text_fragments()
    True
"""

from __future__ import annotations

import string

from data_prep.shapeworld.chains import fixed_texts
from data_prep.shapeworld.prompts import COUNT_WORDS, PLURALS, TEMPLATES
from data_prep.shapeworld.relations import RELATIONS
from data_prep.shapeworld.scene import COLORS, SHAPES


def literal_pieces(template: str) -> list[str]:
    """The fixed text of a str.format template, e.g. 'a {shape} and a {shape2}' -> ['a ', ' and a ']."""
    return [literal for literal, *_ in string.Formatter().parse(template) if literal]


def text_fragments() -> list[str]:
    """Template text, every filler (colours, shapes, plurals, count words, relations), names and chain phrasing."""
    fragments = [piece for template in TEMPLATES.values() for piece in literal_pieces(template)]
    fragments += [*COLORS, *SHAPES, *PLURALS.values(), *COUNT_WORDS.values(), *RELATIONS]
    fragments += [f"{color} {shape}" for color in COLORS for shape in SHAPES]  # chain object names
    fragments += fixed_texts()
    return list(dict.fromkeys(fragments))  # de-duplicated, order kept (the vocabulary must be deterministic)
