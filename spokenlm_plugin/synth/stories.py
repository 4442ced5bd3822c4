"""A spoken story world: short generated stories over a small lexicon, the second text
source of ``synth-corpus --text stories`` beside WordNet's example sentences.

In the spirit of TinyStories, but from a grammar small enough that an hour of speech holds its
frequent words many times: 8 names, 60 nouns with their plurals (24 characters, 22 things, 14
places), 25 adjectives, 25 transitive and 20 intransitive verbs (base, third person singular, past),
determiners (a / an, the, this / these, that / those, two, three, some, many, possessives), pronouns
and place phrases: 324 word forms (:func:`vocabulary`). Within each category words are drawn with
Zipfian weights (the word of rank r: ``1 / r ** ZIPF_EXPONENT``). A story has 2-5 sentences in one
tense (present or past); its hero comes first as an indefinite noun phrase or a name, then as a
pronoun (he / she / it / they) or a definite noun phrase; things once mentioned come back as ``it`` /
``them`` or ``the`` + noun, a second character met as an object may become a subject.

Four templates: intransitive (``the dog runs to the park``), transitive (``lily finds a red ball in
the garden``), copula (``they are very happy``) and possession (``tom has two kites``); a story's first
sentence may open with ``one day,``, a later one with ``then``. Verbs agree with their subjects in
the present (``runs`` / ``run``, ``is`` / ``are``, ``has`` / ``have``).

The world is one infinite stream of distinct sentences from :data:`WORLD_SEED` (:func:`world`):
sentence ``k`` does not depend on how many are read, so a corpus of any size reads a prefix of it,
and a sentence's index (its position) names it as a WordNet sentence's index does. Pools, by a hash
of the words as in :func:`.text.sentence_pool`: ``pretrain`` (1 in 4, the same rule: only ever read
into the pretraining corpus), ``text`` (1 in 4: the joint LM's text-only corpus, never spoken) and
``aligned`` (the rest: the aligned corpus and the minimal pairs). Splits of a pool are cut by a hash
salted with the corpus' seed (:func:`pool_splits`), so each split's sentences are a prefix-stable
stream too.

:func:`violations` lists the ungrammatical variants of a sentence that keep its number of phones (the
sBLIMP-like pairs of ``synth-pairs``):

- ``agreement/subject_verb``, both directions: ``is`` / ``are`` and ``has`` / ``have`` swapped; a
  lexical verb's ``-s`` moved to a noun after it (``the dog runs to the park`` -> ``*the dog run to
  the parks``) or taken from one (``the dogs run to the parks`` -> ``*the dogs runs to the park``); the
  noun has a determiner that fits either number (the, his, her, ...), so only the verb is wrong;
- ``agreement/determiner_noun``, both directions: ``this`` / ``these`` and ``that`` / ``those``
  swapped; ``a`` + plural (``she finds a ball in the parks`` -> ``*she finds a balls in the park``)
  and ``two`` / ``three`` / ``many`` + singular, the ``-s`` again moved between two nouns;
- ``word_order``: a determiner and its noun swapped (``the dog`` -> ``dog the``), an adjective and
  its noun swapped (``a red ball`` -> ``a ball red``).

An ``-s`` moves only between words whose endings have as many phones (:func:`suffix_phones`: the
spelling rule, checked against flite's lexicon in the tests).
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from itertools import islice
from typing import Iterator, Literal, NamedTuple, Sequence

from .text import PRETRAIN_EVERY, Sentence

StoryPool = Literal["aligned", "pretrain", "text"]
Split = Literal["train", "valid", "test"]
Gender = Literal["he", "she", "it", "any"]
Role = Literal["subject", "object", "place"]
Direction = Literal["singular_to_plural", "plural_to_singular", ""]

#: The seed of the world every corpus speaks (the corpus' own ``--seed`` cuts its splits).
WORLD_SEED = 0
#: Rank exponent of the word choice within each category (1: Zipf's law).
ZIPF_EXPONENT = 1.0
#: No sentence of this world lasts less (seconds, the fastest speaker): a corpus of S seconds needs at
#: most S / MIN_SECONDS sentences per split (see :func:`aligned_splits`).
MIN_SECONDS = 0.5
#: Hash residues (mod PRETRAIN_EVERY) of the pools: 0 is text.py's pretraining pool.
_TEXT_RESIDUE = 1


# --------------------------------------------------------------------------- the lexicon


@dataclass(frozen=True)
class Noun:
    singular: str
    plural: str
    #: The pronoun of a character (``any``: an animal, he, she or it, drawn for each story); things and
    #: places: it.
    gender: Gender = "it"


@dataclass(frozen=True)
class Verb:
    base: str
    third: str
    past: str
    #: What the object of a transitive verb may be: characters (c), things (t) or both.
    objects: str = ""
    #: A verb of motion: its place phrase may be "to the park".
    motion: bool = False


def plural(singular: str) -> str:
    """The regular plural: -es after a sibilant, -ies after a consonant + y, else -s."""
    if singular.endswith(("s", "x", "z", "ch", "sh")):
        return singular + "es"
    if singular.endswith("y") and singular[-2:-1] not in ("a", "e", "i", "o", "u"):
        return singular[:-1] + "ies"
    return singular + "s"


def _nouns(spec: str, gender: Gender = "it") -> tuple[Noun, ...]:
    """``"dog cat mouse/mice"``: regular plurals by :func:`plural`, irregular ones written out."""
    out = []
    for item in spec.split():
        singular, _, irregular = item.partition("/")
        out.append(Noun(singular, irregular or plural(singular), gender))
    return tuple(out)


def _verbs(spec: str) -> tuple[Verb, ...]:
    """``"see,sees,saw,ct"``: base, third person, past, then object kinds (transitive only) and ``m``
    for a verb of motion."""
    out = []
    for item in spec.split():
        base, third, past, *tags = item.split(",")
        flags = tags[0] if tags else ""
        out.append(Verb(base, third, past, flags.replace("m", ""), "m" in flags))
    return tuple(out)


#: Names: (name, pronoun); written capitalized, transcribed in lower case.
NAMES: tuple[tuple[str, Gender], ...] = (
    ("lily", "she"), ("tom", "he"), ("ben", "he"), ("mia", "she"), ("sam", "he"), ("anna", "she"),
    ("max", "he"), ("lucy", "she"),
)
#: Each category in rank order (the first is the most frequent).
CHARACTERS: tuple[Noun, ...] = (
    _nouns("girl", "she") + _nouns("boy", "he")
    + _nouns("dog cat bird rabbit bear frog duck mouse/mice puppy kitten monkey lion", "any")
    + _nouns("friend", "any") + _nouns("horse pig fox turtle tiger owl", "any")
    + _nouns("teacher farmer baby", "any")
)
THINGS: tuple[Noun, ...] = _nouns(
    "ball box cake apple book hat kite boat toy flower stone cup shell egg cookie key drum bag car "
    "train balloon leaf/leaves"
)
PLACES: tuple[Noun, ...] = _nouns("park garden forest river school beach lake farm hill kitchen pond field tree house")
#: Adjectives of characters, things and places (a word may serve several).
CHARACTER_ADJECTIVES: tuple[str, ...] = tuple(
    "happy little big sad hungry sleepy kind funny brave good tall small old tiny fast".split()
)
THING_ADJECTIVES: tuple[str, ...] = tuple("big red little new small green blue old yellow shiny soft pretty tiny warm dark".split())
PLACE_ADJECTIVES: tuple[str, ...] = tuple("big little old dark green small pretty warm new".split())
ADJECTIVES: tuple[str, ...] = tuple(dict.fromkeys(CHARACTER_ADJECTIVES + THING_ADJECTIVES + PLACE_ADJECTIVES))
TRANSITIVE: tuple[Verb, ...] = _verbs(
    "see,sees,saw,ct find,finds,found,ct like,likes,liked,ct want,wants,wanted,t take,takes,took,tm "
    "help,helps,helped,c hold,holds,held,t love,loves,loved,ct eat,eats,ate,t chase,chases,chased,cm "
    "kick,kicks,kicked,t throw,throws,threw,t hug,hugs,hugged,c carry,carries,carried,tm "
    "follow,follows,followed,cm bring,brings,brought,tm catch,catches,caught,ct open,opens,opened,t "
    "share,shares,shared,t draw,draws,drew,ct build,builds,built,t paint,paints,painted,t "
    "pull,pulls,pulled,t push,pushes,pushed,t wash,washes,washed,ct"
)
INTRANSITIVE: tuple[Verb, ...] = _verbs(
    "play,plays,played run,runs,ran,m jump,jumps,jumped walk,walks,walked,m sleep,sleeps,slept "
    "sing,sings,sang swim,swims,swam,m smile,smiles,smiled laugh,laughs,laughed hide,hides,hid "
    "sit,sits,sat dance,dances,danced cry,cries,cried rest,rests,rested wait,waits,waited "
    "fall,falls,fell climb,climbs,climbed,m shout,shouts,shouted skip,skips,skipped,m dream,dreams,dreamed"
)
#: Prepositions of place phrases; verbs of motion take "to" too.
PREPOSITIONS: tuple[str, ...] = ("in", "near", "by")
MOTION_PREPOSITIONS: tuple[str, ...] = ("to", "in", "near", "by")
#: Determiners of a first mention, by number, and those that say nothing of number.
SINGULAR_DETERMINERS: tuple[str, ...] = ("a", "this", "that")
PLURAL_DETERMINERS: tuple[str, ...] = ("two", "some", "these", "three", "those", "many")
POSSESSIVE = {"he": "his", "she": "her", "it": "its", "they": "their"}
#: Determiners that agree with either number: a noun after one can take -s or lose it freely.
NEUTRAL_DETERMINERS = frozenset({"the", "his", "her", "its", "their"})
SUBJECT_PRONOUNS = {"he": "he", "she": "she", "it": "it", "they": "they"}
OBJECT_PRONOUNS = {"he": "him", "she": "her", "it": "it", "they": "them"}
#: Number words among the plural determiners: ``*two dog`` is a determiner-noun violation.
NUMERAL_DETERMINERS = frozenset({"two", "three", "many"})
_DEMONSTRATIVES = {"this": "these", "that": "those", "these": "this", "those": "that"}
_ANIMAL_GENDERS: tuple[Gender, ...] = ("he", "she", "it")
_VOWEL_LETTERS = "aeiou"
_PLAIN_ONSETS = ("one", "eu", "uni", "use")  # spelled with a vowel, said with a consonant (a unicorn)


def vocabulary() -> list[str]:
    """Every word form the grammar can produce (lower case), sorted."""
    words = {n for n, _ in NAMES} | set(ADJECTIVES) | set(MOTION_PREPOSITIONS)
    for noun in CHARACTERS + THINGS + PLACES:
        words |= {noun.singular, noun.plural}
    for verb in TRANSITIVE + INTRANSITIVE:
        words |= {verb.base, verb.third, verb.past}
    words |= set(SINGULAR_DETERMINERS) | set(PLURAL_DETERMINERS) | {"an", "the"} | set(POSSESSIVE.values())
    words |= set(SUBJECT_PRONOUNS.values()) | set(OBJECT_PRONOUNS.values())
    words |= {"is", "are", "was", "were", "has", "have", "had", "one", "day", "then", "very"}
    return sorted(words)


def content_words() -> list[str]:
    """Nouns, adjectives and verbs (the candidates of lexical pairs; names and function words excluded)."""
    words = set(ADJECTIVES)
    for noun in CHARACTERS + THINGS + PLACES:
        words |= {noun.singular, noun.plural}
    for verb in TRANSITIVE + INTRANSITIVE:
        words |= {verb.base, verb.third, verb.past}
    return sorted(words)


def suffix_phones(stem: str, inflected: str) -> int:
    """Phones an -s ending adds (plural, third person), by spelling: ``-es`` after a sibilant and
    ``-ce`` / ``-se`` / ``-ge`` / ``-ze`` stems add a syllable (IH Z), other -s endings one phone,
    an irregular form the difference of letters is no guide to (0 for mouse / mice)."""
    if not inflected.endswith("s"):
        return 0  # mice
    if inflected.endswith("es") and stem.endswith(("s", "x", "z", "ch", "sh")):
        return 2  # boxes, catches, pushes
    if stem.endswith(("ce", "se", "ge", "ze")):
        return 2  # dances, houses, chases
    return 1


# --------------------------------------------------------------------------- sentences and parses


class NounSlot(NamedTuple):
    """A noun phrase of a sentence: word positions and the noun's two forms."""

    det: int | None
    adj: int | None
    noun: int
    plural: bool
    forms: tuple[str, str]  # (singular, plural)
    role: Role


class VerbSlot(NamedTuple):
    """The sentence's verb: ``kind`` lexical, be or have; ``forms`` (plural, third person) in the present."""

    position: int
    kind: Literal["lexical", "be", "have"]
    tense: Literal["present", "past"]
    forms: tuple[str, str]


class Parse(NamedTuple):
    """What :func:`violations` needs of a sentence: its noun phrases (pronouns and names are none) and verb,
    and the subject's number."""

    nouns: tuple[NounSlot, ...]
    verb: VerbSlot
    plural_subject: bool


@dataclass(frozen=True)
class StorySentence(Sentence):
    """A generated sentence: ``index`` is its position in the world, ``story`` the story it belongs to."""

    story: int = 0
    parse: Parse | None = None


class Violation(NamedTuple):
    """An ungrammatical variant (the fields of :class:`.minimal_pairs.Variant`)."""

    bad: tuple[str, ...]
    type: str
    subtype: str
    direction: Direction
    change: str


@dataclass
class _Entity:
    """Someone or something a story has mentioned."""

    noun: Noun | None  # None: a name
    name: str
    plural: bool
    gender: Gender  # he / she / it / they

    @property
    def pronoun(self) -> str:
        return "they" if self.plural else self.gender


def _zipf(n: int) -> list[float]:
    return [1.0 / (rank + 1) ** ZIPF_EXPONENT for rank in range(n)]


_WEIGHTS: dict[int, list[float]] = {}


def _pick(rng: random.Random, items: Sequence):
    weights = _WEIGHTS.get(len(items))
    if weights is None:
        weights = _WEIGHTS[len(items)] = _zipf(len(items))
    return rng.choices(items, weights)[0]


def _article(word: str) -> str:
    return "an" if word[0] in _VOWEL_LETTERS and not word.startswith(_PLAIN_ONSETS) else "a"


class _Builder:
    """Words of one sentence under construction, with its slots."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.nouns: list[NounSlot] = []
        self.verb: VerbSlot | None = None

    def noun_phrase(self, det: str | None, adjective: str | None, noun: Noun, plural: bool, role: Role) -> None:
        word = noun.plural if plural else noun.singular
        if det == "a":
            det = _article(adjective or word)
        d = self._add(det) if det else None
        a = self._add(adjective) if adjective else None
        self.nouns.append(NounSlot(d, a, self._add(word), plural, (noun.singular, noun.plural), role))

    def _add(self, word: str) -> int:
        self.words.append(word)
        return len(self.words) - 1


class _Story:
    """One story's state: tense, hero, what has been mentioned."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tense: Literal["present", "past"] = "present" if rng.random() < 0.5 else "past"
        self.hero = self._new_character()
        self.other: _Entity | None = None  # a second character, once met
        self.things: list[_Entity] = []
        self.told = 0

    def _new_character(self) -> _Entity:
        rng = self.rng
        if rng.random() < 0.3:
            name, gender = _pick(rng, NAMES)
            return _Entity(None, name, False, gender)
        noun = _pick(rng, CHARACTERS)
        gender = noun.gender if noun.gender != "any" else rng.choice(_ANIMAL_GENDERS)
        return _Entity(noun, noun.singular, rng.random() < 0.3, gender)

    def _new_thing(self, nouns: Sequence[Noun]) -> _Entity:
        noun = _pick(self.rng, nouns)
        return _Entity(noun, noun.singular, self.rng.random() < 0.35, "it")

    # ------------------------------------------------------------------ noun phrases

    def _mention(self, b: _Builder, e: _Entity, role: Role, *, first: bool, owner: _Entity | None = None) -> None:
        """Say ``e``: a name, a pronoun (not at its first mention), an indefinite (first) or definite noun phrase."""
        rng = self.rng
        if not first and rng.random() < 0.5:
            b._add((SUBJECT_PRONOUNS if role == "subject" else OBJECT_PRONOUNS)[e.pronoun])
            return
        if e.noun is None:
            b._add(e.name)
            return
        adjectives = THING_ADJECTIVES if e.noun in THINGS else CHARACTER_ADJECTIVES
        adjective = _pick(rng, adjectives) if rng.random() < (0.4 if first else 0.2) else None
        if first:
            if owner is not None and rng.random() < 0.25:
                det = POSSESSIVE[owner.pronoun]
            else:
                det = _pick(rng, PLURAL_DETERMINERS if e.plural else SINGULAR_DETERMINERS)
        else:
            det = "the"
        b.noun_phrase(det, adjective, e.noun, e.plural, role)

    def _subject(self, b: _Builder) -> _Entity:
        rng = self.rng
        if self.told == 0:
            self._mention(b, self.hero, "subject", first=True)
            return self.hero
        who = self.other if self.other is not None and rng.random() < 0.25 else self.hero
        self._mention(b, who, "subject", first=False)
        return who

    def _place(self, b: _Builder, subject: _Entity, verb: Verb) -> None:
        rng = self.rng
        b._add(rng.choice(MOTION_PREPOSITIONS if verb.motion else PREPOSITIONS))
        noun = _pick(rng, PLACES)
        det = POSSESSIVE[subject.pronoun] if rng.random() < 0.15 else "the"
        adjective = _pick(rng, PLACE_ADJECTIVES) if rng.random() < 0.15 else None
        b.noun_phrase(det, adjective, noun, rng.random() < 0.2, "place")

    # ------------------------------------------------------------------ verbs

    def _verb(self, b: _Builder, verb: Verb, subject: _Entity) -> None:
        if self.tense == "past":
            word = verb.past
        else:
            word = verb.base if subject.plural else verb.third
        b.verb = VerbSlot(b._add(word), "lexical", self.tense, (verb.base, verb.third))

    def _aux(self, b: _Builder, kind: Literal["be", "have"], subject: _Entity) -> None:
        plural, third, past = ("are", "is", "were" if subject.plural else "was") if kind == "be" else ("have", "has", "had")
        word = past if self.tense == "past" else plural if subject.plural else third
        b.verb = VerbSlot(b._add(word), kind, self.tense, (plural, third))

    # ------------------------------------------------------------------ sentences

    def sentence(self) -> tuple[tuple[str, ...], str, Parse]:
        """The story's next sentence: (words, text, parse)."""
        rng = self.rng
        b = _Builder()
        opener = ""
        if self.told == 0 and rng.random() < 0.3:
            opener = "one day,"
            b.words += ["one", "day"]
        elif self.told > 0 and rng.random() < 0.2:
            opener = "then"
            b.words.append("then")
        subject = self._subject(b)
        template = rng.choices(("intransitive", "transitive", "copula", "possession"), (3, 4, 2, 1))[0]
        if template == "intransitive":
            verb = _pick(rng, INTRANSITIVE)
            self._verb(b, verb, subject)
            if rng.random() < 0.6:
                self._place(b, subject, verb)
        elif template == "transitive":
            verb = _pick(rng, TRANSITIVE)
            self._verb(b, verb, subject)
            self._object(b, verb.objects, subject)
            if rng.random() < 0.35:
                self._place(b, subject, verb)
        elif template == "copula":
            self._aux(b, "be", subject)
            if rng.random() < 0.3:
                b._add("very")
            b._add(_pick(rng, CHARACTER_ADJECTIVES))
        else:
            self._aux(b, "have", subject)
            thing = self._new_thing(THINGS)
            self.things.append(thing)
            self._mention(b, thing, "object", first=True)
        self.told += 1
        assert b.verb is not None
        words = tuple(b.words)
        plural_subject = subject.plural
        return words, _text(words, opener), Parse(tuple(b.nouns), b.verb, plural_subject)

    def _object(self, b: _Builder, kinds: str, subject: _Entity) -> None:
        rng = self.rng
        if "c" in kinds and (kinds == "c" or rng.random() < 0.4):
            # Someone met before (never the subject itself), or someone new.
            known = [e for e in (self.hero, self.other) if e is not None and e is not subject]
            if not known or rng.random() < 0.3:
                other = self._new_character()
                while other.name == subject.name:
                    other = self._new_character()
                self.other = other
                self._mention(b, other, "object", first=True)
            else:
                self._mention(b, rng.choice(known), "object", first=False)
            return
        if self.things and rng.random() < 0.4:
            self._mention(b, rng.choice(self.things), "object", first=False)
            return
        thing = self._new_thing(THINGS)
        self.things.append(thing)
        self._mention(b, thing, "object", first=True, owner=subject)


def _text(words: Sequence[str], opener: str) -> str:
    """What the synthesizer reads: names capitalized, a comma after ``one day``, a full stop."""
    names = {n for n, _ in NAMES}
    out = [w.capitalize() if w in names else w for w in words]
    if opener == "one day,":
        out[1] += ","
    out[0] = out[0][0].upper() + out[0][1:]
    return " ".join(out) + "."


def stories(seed: int) -> Iterator[list[tuple[tuple[str, ...], str, Parse]]]:
    """Stories of 2-5 sentences, forever, from ``seed``."""
    rng = random.Random(seed)
    while True:
        story = _Story(rng)
        yield [story.sentence() for _ in range(rng.randint(2, 5))]


def world(seed: int = WORLD_SEED) -> Iterator[StorySentence]:
    """The world's distinct sentences in story order (a sentence said before is skipped); ``index``
    counts them from 0, so a sentence's index names it whatever the number read."""
    seen: set[tuple[str, ...]] = set()
    index = 0
    for story_id, story in enumerate(stories(seed)):
        for words, text, parse in story:
            if words in seen:
                continue
            seen.add(words)
            yield StorySentence(index, text, words, story=story_id, parse=parse)
            index += 1


# --------------------------------------------------------------------------- pools and splits


def _digest(words: Sequence[str], salt: str = "") -> int:
    return zlib.crc32((salt + " ".join(words)).encode("utf-8"))


def story_pool(sentence: Sentence) -> StoryPool:
    """The pool of a sentence, fixed by its words alone: ``pretrain`` exactly as :func:`.text.sentence_pool`
    says, ``text`` one in four, ``aligned`` the rest."""
    residue = _digest(sentence.words) % PRETRAIN_EVERY
    return "pretrain" if residue == 0 else "text" if residue == _TEXT_RESIDUE else "aligned"


def pool_stream(pool: StoryPool, *, seed: int = WORLD_SEED) -> Iterator[StorySentence]:
    """The world's sentences of one pool, in world order."""
    return (s for s in world(seed) if story_pool(s) == pool)


def pool_sentences(pool: StoryPool, n: int, *, seed: int = WORLD_SEED) -> list[StorySentence]:
    """The first ``n`` sentences of a pool."""
    return list(islice(pool_stream(pool, seed=seed), n))


def split_of(sentence: Sentence, *, seed: int, fractions: Sequence[tuple[str, float]]) -> str:
    """The split of a sentence by a hash of its words salted with ``seed``: the first of ``fractions``
    ((name, share), ...; the last takes the rest) whose cumulative share covers it."""
    u = _digest(sentence.words, f"{seed}\t") / 2**32
    edge = 0.0
    for name, share in fractions[:-1]:
        edge += share
        if u < edge:
            return name
    return fractions[-1][0]


def sentences_for(seconds: float) -> int:
    """How many sentences can never fall short of ``seconds`` of speech (each lasts >= MIN_SECONDS)."""
    return int(seconds / MIN_SECONDS) + 1


def pool_splits(
    pool: StoryPool, counts: dict[str, int], *, seed: int, fractions: Sequence[tuple[str, float]],
    world_seed: int = WORLD_SEED,
) -> dict[str, list[StorySentence]]:
    """The first ``counts[split]`` sentences of each split of a pool (splits by :func:`split_of`).

    A split's list is a prefix of the same stream whatever the counts, so a larger corpus extends a
    smaller one."""
    out: dict[str, list[StorySentence]] = {name: [] for name, _ in fractions}
    missing = sum(1 for name in out if counts.get(name, 0) > 0)
    for sentence in pool_stream(pool, seed=world_seed):
        if not missing:
            break
        name = split_of(sentence, seed=seed, fractions=fractions)
        want = counts.get(name, 0)
        if len(out[name]) < want:
            out[name].append(sentence)
            if len(out[name]) == want:
                missing -= 1
    return out


def aligned_splits(
    seconds: dict[Split, float], *, seed: int, valid_fraction: float, test_fraction: float
) -> dict[Split, list[StorySentence]]:
    """Sentences of the aligned pool for each split, enough for ``seconds[split]`` of speech
    (test, valid and train shares of the sentences: ``test_fraction``, ``valid_fraction``, the rest)."""
    fractions = (("test", test_fraction), ("valid", valid_fraction), ("train", 1.0))
    chosen = pool_splits("aligned", {k: sentences_for(v) for k, v in seconds.items()}, seed=seed, fractions=fractions)
    return {"train": chosen["train"], "valid": chosen["valid"], "test": chosen["test"]}


def text_only_sentences(n: int, *, seed: int = WORLD_SEED) -> list[StorySentence]:
    """The joint LM's text-only corpus: the first ``n`` sentences of the ``text`` pool (never spoken)."""
    return pool_sentences("text", n, seed=seed)


# --------------------------------------------------------------------------- ungrammatical variants


def _plural_form(slot: NounSlot, plural: bool) -> str:
    return slot.forms[1] if plural else slot.forms[0]


def _suffix(forms: tuple[str, str]) -> int:
    return suffix_phones(*forms)


def violations(sentence: StorySentence) -> list[Violation]:
    """Every ungrammatical variant of a story sentence with the same number of phones as it (by
    spelling: ``synth-pairs`` checks each with flite's front end before using it)."""
    parse = sentence.parse
    if parse is None:
        return []
    words = sentence.words
    out: list[Violation] = []

    def changed(*edits: tuple[int, str]) -> tuple[str, ...]:
        bad = list(words)
        for i, w in edits:
            bad[i] = w
        return tuple(bad)

    def movable(*, after: int, plural: bool, phones: int, skip: int | None = None) -> list[NounSlot]:
        return [
            s for s in parse.nouns
            if s.role != "subject" and s.noun > after and s.noun != skip and s.plural == plural
            and s.det is not None and words[s.det] in NEUTRAL_DETERMINERS and _suffix(s.forms) == phones
        ]

    verb = parse.verb
    direction: Direction = "plural_to_singular" if parse.plural_subject else "singular_to_plural"
    if verb.tense == "present":
        plural_form, third = verb.forms
        wrong = third if parse.plural_subject else plural_form
        if verb.kind != "lexical":
            out.append(Violation(changed((verb.position, wrong)), "agreement", "subject_verb", direction,
                                 f"{words[verb.position]}->{wrong}"))
        else:
            # The verb's -s moves to (or from) a noun after it: as many phones, one agreement error.
            phones = suffix_phones(plural_form, third)
            for slot in movable(after=verb.position, plural=parse.plural_subject, phones=phones):
                noun = _plural_form(slot, not slot.plural)
                change = "verb+s" if parse.plural_subject else "verb-s"
                out.append(Violation(changed((verb.position, wrong), (slot.noun, noun)), "agreement", "subject_verb",
                                     direction, change))
                break
    for slot in parse.nouns:
        if slot.det is None:
            continue
        det = words[slot.det]
        if det in _DEMONSTRATIVES:
            d: Direction = "plural_to_singular" if slot.plural else "singular_to_plural"
            out.append(Violation(changed((slot.det, _DEMONSTRATIVES[det])), "agreement", "determiner_noun", d,
                                 f"{det}->{_DEMONSTRATIVES[det]}"))
        elif slot.role != "subject" and (det in ("a", "an") or det in NUMERAL_DETERMINERS):
            # a dog -> *a dogs (two dogs -> *two dog), the -s taken from (given to) another noun.
            phones = _suffix(slot.forms)
            for other in movable(after=-1, plural=not slot.plural, phones=phones, skip=slot.noun):
                bad = changed((slot.noun, _plural_form(slot, not slot.plural)),
                              (other.noun, _plural_form(other, slot.plural)))
                if slot.plural:
                    out.append(Violation(bad, "agreement", "determiner_noun", "plural_to_singular", "numeral+singular"))
                else:
                    out.append(Violation(bad, "agreement", "determiner_noun", "singular_to_plural", "a+plural"))
                break
        if slot.adj is None and slot.det + 1 == slot.noun:
            swapped = changed((slot.det, words[slot.noun]), (slot.noun, det))
            out.append(Violation(swapped, "word_order", "determiner_noun_swap", "", "determiner_noun_swap"))
        if slot.adj is not None:
            swapped = changed((slot.adj, words[slot.noun]), (slot.noun, words[slot.adj]))
            out.append(Violation(swapped, "word_order", "adjective_noun_swap", "", "adjective_noun_swap"))
    return out
