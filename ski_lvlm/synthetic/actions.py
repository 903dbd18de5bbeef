"""The synthetic world's action classes and the words that describe them: captions, QA pairs, class phrases.

Class names are compositional ("wave left hand", "raise right hand", ...) so a text encoder can recognise an
unseen combination of seen words. Everything here is text: the motions themselves are in
:mod:`ski_lvlm.synthetic.motions`, and :mod:`ski_lvlm.synthetic.world` writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ActionClass",
    "ACTIONS",
    "CLASS_NAMES",
    "DEFAULT_NOVEL",
    "TEMPO_WORDS",
    "SLOW_BELOW",
    "FAST_ABOVE",
    "DESCRIBE_PROMPTS",
    "tempo_of",
    "cap_first",
    "captions_for",
    "QUESTIONS",
    "qa_for",
    "class_phrases",
]

# ----------------------------------------------------------------------------------------------------------
# The classes


@dataclass(frozen=True)
class ActionClass:
    """One action: its motion and the words that describe it (captions, QA, Charades fields)."""

    name: str
    motion: str  # key into ski_lvlm.synthetic.motions.MOTIONS
    verb: str  # third person: "waves their left hand"
    gerund: str  # "waving their left hand"
    part: str  # the body part that moves most: "the left hand"
    limb: tuple[str, str] | None  # ("hand" | "leg", "left" | "right" | "both") for "which hand/leg" questions
    where: str = ""  # a short place phrase for captions: "above the shoulder"
    detail: str = ""  # a participle clause: "swinging it from side to side"
    objects: str = ""  # Charades ``objects`` field (';'-separated)


def _sided(side: str) -> dict[str, ActionClass]:
    return {
        f"wave {side} hand": ActionClass(
            f"wave {side} hand", f"wave_{side}", f"waves their {side} hand", f"waving their {side} hand",
            f"the {side} hand", ("hand", side), "above the shoulder", "swinging the forearm from side to side"),
        f"raise {side} hand": ActionClass(
            f"raise {side} hand", f"raise_{side}", f"raises their {side} hand", f"raising their {side} hand",
            f"the {side} arm", ("hand", side), "above the head", "lifting the straight arm up high"),
        f"touch head with {side} hand": ActionClass(
            f"touch head with {side} hand", f"touch_head_{side}", f"touches their head with their {side} hand",
            f"touching their head with their {side} hand", f"the {side} hand", ("hand", side), "",
            "resting the hand on top of the head with the elbow out"),
        f"kick with {side} leg": ActionClass(
            f"kick with {side} leg", f"kick_{side}", f"kicks with their {side} leg", f"kicking with their {side} leg",
            f"the {side} leg", ("leg", side), "into the air in front of them",
            "swinging the leg forward and snapping the knee straight"),
    }


_L, _R = _sided("left"), _sided("right")
ACTIONS: dict[str, ActionClass] = {a.name: a for a in [
    _L["wave left hand"], _R["wave right hand"], _L["raise left hand"], _R["raise right hand"],
    _L["touch head with left hand"], _R["touch head with right hand"],
    _L["kick with left leg"], _R["kick with right leg"],
    ActionClass("drink water", "drink", "drinks water with their right hand", "drinking water with their right hand",
                "the right hand", ("hand", "right"), "", "lifting the hand to the mouth and tilting the head back",
                "cup"),
    ActionClass("brush teeth", "brush_teeth", "brushes their teeth with their right hand",
                "brushing their teeth with their right hand", "the right hand", ("hand", "right"), "",
                "moving the hand quickly from side to side at the mouth", "toothbrush"),
    ActionClass("sit down", "sit_down", "sits down", "sitting down", "the legs", None, "",
                "bending the knees and lowering the hips as if onto a chair", "chair"),
    ActionClass("stand up", "stand_up", "stands up", "standing up", "the legs", None, "",
                "straightening the legs and rising from a seated position", "chair"),
    ActionClass("clap", "clap", "claps their hands", "clapping their hands", "both hands", ("hand", "both"),
                "in front of the chest", "bringing both hands together several times"),
    ActionClass("bow", "bow", "bows", "bowing", "the upper body", None, "from the hips",
                "bending the upper body forward and straightening up again"),
    ActionClass("cross arms", "cross_arms", "crosses their arms", "crossing their arms", "both arms",
                ("hand", "both"), "over the chest", "folding each hand onto the opposite upper arm"),
    ActionClass("squat", "squat", "squats down", "squatting down", "the legs", None, "",
                "bending both knees deeply with the arms held out in front"),
    ActionClass("jump", "jump", "jumps", "jumping", "the whole body", None, "on the spot",
                "swinging the arms up and pushing off with both legs"),
    ActionClass("point with right hand", "point_right", "points with their right hand",
                "pointing with their right hand", "the right arm", ("hand", "right"), "at something in front",
                "stretching the right arm out at shoulder height"),
    ActionClass("pick up", "pick_up", "picks something up with their right hand",
                "picking something up with their right hand", "the upper body and the right hand", ("hand", "right"),
                "from the floor", "bending down to reach the floor", "object"),
    ActionClass("throw", "throw", "throws something with their right hand", "throwing something with their right hand",
                "the right arm", ("hand", "right"), "over the shoulder",
                "swinging the arm back behind the head and then forward", "ball"),
]}

CLASS_NAMES: tuple[str, ...] = (
    "wave left hand", "wave right hand", "raise left hand", "raise right hand", "touch head with left hand",
    "touch head with right hand", "kick with left leg", "kick with right leg", "drink water", "brush teeth",
    "sit down", "stand up", "clap", "bow", "cross arms", "squat", "jump", "point with right hand", "pick up", "throw",
)
assert tuple(ACTIONS) == CLASS_NAMES

DEFAULT_NOVEL: tuple[str, ...] = (
    "wave right hand", "touch head with left hand", "kick with left leg", "raise left hand",
)

TEMPO_WORDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    # tempo -> (adverb phrases, adjective, QA answer)
    "slow": (("slowly", "at a slow pace", "unhurriedly"), "slow", "Slowly."),
    "normal": (("at a normal pace", "at a steady pace", "steadily"), "steady", "At a normal pace."),
    "fast": (("quickly", "rapidly", "at a fast pace"), "fast", "Quickly."),
}
SLOW_BELOW, FAST_ABOVE = 0.9, 1.25  # speed factor thresholds (speed is drawn log-uniformly in 0.75..1.5)
_WHO = (("a person", "the person"), ("a person", "the person"), ("an individual", "the individual"),
        ("an adult", "the adult"))
DESCRIBE_PROMPTS = (
    "Describe what the person is doing in this video.",
    "What is happening in this video?",
    "Give a short description of the activity in the video.",
    "Explain the action performed by the person in the video.",
)


def tempo_of(speed: float) -> str:
    return "slow" if speed < SLOW_BELOW else "fast" if speed > FAST_ABOVE else "normal"

# ----------------------------------------------------------------------------------------------------------
# Language: captions, QA, instructions


def cap_first(s: str) -> str:
    return s[:1].upper() + s[1:]


def captions_for(clip: dict[str, Any], rng: np.random.Generator) -> list[str]:
    """3-5 captions of one clip; each names the action (with its body side/part) and most name the tempo."""
    a = ACTIONS[clip["class"]]
    adverbs, adj, _ = TEMPO_WORDS[clip["tempo"]]
    adv = lambda: adverbs[int(rng.integers(len(adverbs)))]  # noqa: E731
    a_who, the_who = _WHO[int(rng.integers(len(_WHO)))]
    pool = [
        f"{a_who} {a.verb} {adv()}.",
        f"Someone is {a.gerund}, moving {adv()}.",
        f"{the_who} {a.verb} {adv()}, {a.detail}.",
        f"In a {clip['scene']}, {a_who} {a.verb} {adv()}.",
        f"{a_who} {a.verb}, {a.detail}, and the movement is {adj}.",
    ]
    part = a.part.replace("the ", "their ")
    if a.part.replace("the ", "") not in a.verb:  # name the body part where the verb does not
        pool.append(f"{a_who} {a.verb} {adv()}, mostly moving {part}.")
    if a.where:
        pool.insert(0, f"{a_who} {a.verb} {adv()} {a.where}.")
    first = pool[0]
    rest = pool[1:]
    picks = rng.choice(len(rest), size=int(rng.integers(2, 5)), replace=False)
    caps = [first] + [rest[int(i)] for i in sorted(picks)]
    if clip["bystander"] != "none":
        verb = "walks past" if clip["bystander"] == "walking" else "stands nearby"
        k = int(rng.integers(len(caps)))
        caps[k] = caps[k][:-1] + f" while another person {verb} in the background."
    return [cap_first(c) for c in caps]


# The world's closed questions by type (class_phrases.json maps each to its type for `eval captions`).
QUESTIONS: dict[str, str] = {
    "action": "What is the person doing in the video?",
    "side": "Which {kind} does the person use?",
    "part": "Which body part moves the most?",
    "tempo": "How fast does the person move?",
    "anyone_else": "Is there anyone else in the video?",
    "scene": "Where does this take place?",
}


def qa_for(clip: dict[str, Any]) -> list[tuple[str, str]]:
    """Question/answer pairs about the action, the hand or leg, the body part, the tempo and the scene."""
    a = ACTIONS[clip["class"]]
    qa = [(QUESTIONS["action"], f"The person is {a.gerund}.")]
    if a.limb is not None:
        kind, side = a.limb
        ans = f"Both {kind}s." if side == "both" else f"The {side} {kind}."
        qa.append((QUESTIONS["side"].format(kind=kind), ans))
    qa.append((QUESTIONS["part"], cap_first(a.part) + "."))
    qa.append((QUESTIONS["tempo"], TEMPO_WORDS[clip["tempo"]][2]))
    other = {"none": "No, the person is alone.", "standing": "Yes, another person stands in the background.",
             "walking": "Yes, another person walks past in the background."}[clip["bystander"]]
    qa.append((QUESTIONS["anyone_else"], other))
    qa.append((QUESTIONS["scene"], f"In a {clip['scene']}."))
    return qa


def class_phrases(classes: list[str]) -> dict[str, Any]:
    """What identifies each class, side and tempo in a caption: the contents of ``class_phrases.json``.

    ``ski_lvlm.metrics.grounding`` reads it to tell a caption that names the clip's action from a generic
    one. Per class: ``verbs``, the head verb's forms (third person, gerund, base: "waves", "waving",
    "wave"; with the particle when the class name has it, "sits down", so that "another person stands
    nearby" is not "stand up"); ``side`` (left/right/both, or null) and ``part``. The head verbs differ
    between classes, so the verb and, for classes that share a verb (wave left/right hand), the side
    identify the class. ``tempo`` lists each tempo's words; ``tempo_ignore`` the motion descriptions
    that use a tempo word for something else ("moving the hand quickly from side to side" is how
    brushing looks at any tempo).
    """
    from ski_lvlm.synthetic.render import SCENES

    tempo_words = {w for advs, adj, _ in TEMPO_WORDS.values() for w in (*advs, adj)}
    out: dict[str, Any] = {}
    for name in classes:
        a = ACTIONS[name]
        forms = [a.verb.split()[0], a.gerund.split()[0], name.split()[0]]
        particle = name.split()[1] if len(name.split()) > 1 and name.split()[1] in ("up", "down") else None
        if particle and a.verb.split()[1] == particle:
            forms = [f"{f} {particle}" for f in forms]
        out[name] = {"verbs": forms, "side": a.limb[1] if a.limb else None, "part": a.part}
    ignore = []
    for a in ACTIONS.values():
        words = a.detail.split()
        hits = [i for i, w in enumerate(words) if w in tempo_words]
        if hits:
            ignore.append(" ".join(words[hits[0]:]))
    questions = {QUESTIONS["side"].format(kind=k): "side" for k in ("hand", "leg")}
    questions.update({q: t for t, q in QUESTIONS.items() if t != "side"})
    return {"format": "ski-lvlm-class-phrases/1", "classes": out,
            "sides": {"left": ["left"], "right": ["right"], "both": ["both"]},
            "tempo": {t: [*advs, adj] for t, (advs, adj, _) in TEMPO_WORDS.items()},
            "tempo_ignore": ignore, "scenes": list(SCENES), "questions": questions}
