"""GoT-R1's rubric questions for a vision-language judge (paper sec. 3.3 and appendix), one per reward term.

Each rubric asks for a 0-10 score as JSON; parse.py reads whatever comes back. The wording follows the paper's
rubrics (what to check, the score bands, the output fields); the judge sees:

- semantic (R_sem): the prompt and the reasoning chain as text;
- spatial (R_spa): the prompt and a picture of the chain's boxes drawn on a blank canvas, each name at its box's
  top-left corner (GoT-R1 found that judging the coordinates as text works worse);
- prompt_image (R_PI): the prompt and the generated image, strict on spatial terms;
- grounding (R_RI): "Locate the <object>, report the bbox coordinates in JSON format." per planned object.

Evaluation questions (janus_rig/eval):

- scene graph (SG-IoU): modelled on LAION-SG's annotation prompt (objects, then their attributes, then the
  relations between them, as structured output), restricted to the record's vocabulary as LAION-SG's SG-IoU asks;
- pairwise preference: two images (or two reasoning chains, as GoT-R1 compares chains) for one caption.

`question(request)` is the (text, images) a VLM judge is asked for any request; hf.py and http.py both use it.
"""

from __future__ import annotations

from PIL import Image

from reward_models.judges.base import GraphRequest, GroundRequest, PairRequest, RubricRequest

SEMANTIC = """You are an expert judge of image-generation plans. A model was given a caption and wrote a reasoning \
chain: a description of the image it is about to draw, in which every object is marked as \
<|obj_start|>name<|obj_end|> followed by its box <|box_start|>(x1,y1),(x2,y2)<|box_end|> on a 0-1000 grid.

Caption: {prompt}
Reasoning chain: {chain}

Judge whether the reasoning chain is semantically faithful to the caption. Check:
1. Missing elements: every object, attribute (colour, shape, count) and relation of the caption appears.
2. Contradictions: nothing in the chain contradicts the caption.
3. Consistency: the chain does not contradict itself and adds no conflicting objects.
4. Clarity and format: every object is marked with a name and a box; the text is readable.

Score from 0 to 10: 0 = gibberish or unrelated; 1-3 = most of the caption is missing or contradicted; \
4-6 = partly faithful, with missing or wrong elements; 7-8 = faithful with minor issues; 9-10 = perfect.
Answer in JSON only: {{"score": <0-10>}}"""

SPATIAL = """You are an expert judge of image layouts. The picture shows a planned layout for an image: every \
planned object is drawn as a box on a blank canvas, with its name written at the box's top-left corner.

Caption: {prompt}

Judge whether the layout satisfies the spatial relations and the objects of the caption (left of, right of, \
above, below, counts; image y grows downwards).
Score from 0 to 10: 8-10 = every relation and object matches the caption; 5-7 = ambiguous (boxes overlap or \
relations are unclear); 1-4 = a relation is contradicted or an object is missing; 0 = the layout is empty or \
unrelated.
Answer in JSON only: {{"score": <0-10>}}"""

PROMPT_IMAGE = """You are a strict judge of generated images.

Caption: {prompt}

Look at the image and judge how well it matches the caption: every object, its colour, shape and count, and \
especially the spatial terms (left of, right of, above, below), which must hold exactly. Be strict: an image \
that gets a relation wrong cannot score above 4.
First describe the image, then write the caption it actually depicts, then reason about the differences, then \
score from 0 to 10 (0 = unrelated, 10 = a perfect match).
Answer in JSON only: {{"description": "...", "caption": "...", "reasoning": "...", "score": <0-10>}}"""

GROUNDING = "Locate the {name}, report the bbox coordinates in JSON format."

SCENE_GRAPH = """You are annotating the scene graph of an image. Use only these words:
Objects: {labels}
Attributes: {attributes}
Relations: {predicates}

1. Objects: list every object in the image that one of the object words names.
2. Attributes: for each object, the listed attributes that apply, written before the object word (e.g. "{example}").
3. Relations: every listed relation that holds between two of these objects, as [subject, relation, object], \
the subject and object written exactly as in step 2 (image y grows downwards; "left of" means the subject is left \
of the object).
Leave out anything the words above cannot name. Answer in JSON only:
{{"objects": ["<attributes> <object>", ...], "relations": [["<subject>", "<relation>", "<object>"], ...]}}"""

PAIR_IMAGE = """You are a strict judge of generated images. Two images were generated for the same caption; the \
first image shown is Image 1, the second is Image 2.

Caption: {prompt}

Which image matches the caption better? Check every object, its colour, shape and count, and especially the \
spatial terms (left of, right of, above, below), which must hold exactly. Answer "tie" only when they are equally good.
Answer in JSON only: {{"reasoning": "...", "better": 1 | 2 | "tie"}}"""

PAIR_CHAIN = """You are an expert judge of image-generation plans. Two reasoning chains were written for the same \
caption; each describes the image about to be drawn and marks every object as <|obj_start|>name<|obj_end|> \
followed by its box <|box_start|>(x1,y1),(x2,y2)<|box_end|> on a 0-1000 grid.

Caption: {prompt}
Chain 1: {first}
Chain 2: {second}

Which chain is the better plan for the caption: every object, attribute and count present, nothing contradicting \
it, and boxes that make every spatial relation hold? Answer "tie" only when they are equally good.
Answer in JSON only: {{"reasoning": "...", "better": 1 | 2 | "tie"}}"""

RUBRICS = {"semantic": SEMANTIC, "spatial": SPATIAL, "prompt_image": PROMPT_IMAGE}


def rubric_text(request: RubricRequest) -> str:
    """The question a VLM judge reads for one rubric request (its image, if any, goes before the text)."""
    return RUBRICS[request.task].format(prompt=request.prompt, chain=request.chain)


def grounding_text(name: str) -> str:
    return GROUNDING.format(name=name)


def scene_graph_text(request: GraphRequest) -> str:
    vocabulary = request.vocabulary
    example = " ".join([*vocabulary.attributes[:1], vocabulary.labels[0]])
    return SCENE_GRAPH.format(labels=", ".join(vocabulary.labels),
                              attributes=", ".join(vocabulary.attributes) or "(none)",
                              predicates=", ".join(vocabulary.predicates) or "(none)", example=example)


def pair_text(request: PairRequest) -> str:
    if request.kind == "image":
        return PAIR_IMAGE.format(prompt=request.prompt)
    return PAIR_CHAIN.format(prompt=request.prompt, first=request.first, second=request.second)


def question(request: RubricRequest | GroundRequest | GraphRequest | PairRequest) -> tuple[str, list[Image.Image]]:
    """(text, images) of the question a VLM judge reads for a request; the images go before the text."""
    if isinstance(request, GroundRequest):
        return grounding_text(request.name), [request.image]
    if isinstance(request, RubricRequest):
        return rubric_text(request), [] if request.image is None else [request.image]
    if isinstance(request, GraphRequest):
        return scene_graph_text(request), [request.image]
    if isinstance(request, PairRequest):
        return pair_text(request), [request.first, request.second] if request.kind == "image" else []
    raise TypeError(f"not a judge request: {type(request).__name__}")
