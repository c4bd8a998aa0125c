"""A deterministic synthetic text corpus for the demo, tests and benchmarks: no download needed."""

from __future__ import annotations

import random
from dataclasses import dataclass

_TOPICS = {
    "databases": ["index", "query", "replica", "transaction", "schema", "vacuum", "shard", "cache"],
    "cooking": ["recipe", "oven", "garlic", "simmer", "dough", "spice", "knife", "broth"],
    "astronomy": ["galaxy", "telescope", "orbit", "nebula", "comet", "planet", "eclipse", "star"],
    "gardening": ["soil", "compost", "seedling", "prune", "tomato", "mulch", "bloom", "root"],
    "finance": ["budget", "interest", "loan", "invoice", "dividend", "ledger", "audit", "tax"],
    "music": ["chord", "melody", "rhythm", "guitar", "tempo", "harmony", "drum", "violin"],
    "travel": ["passport", "flight", "hotel", "luggage", "itinerary", "train", "visa", "map"],
    "health": ["sleep", "exercise", "protein", "vitamin", "stretch", "heart", "hydration", "posture"],
}
_VERBS = ["explains", "compares", "improves", "debugs", "measures", "plans", "reviews", "teaches"]
_ADJECTIVES = ["quick", "practical", "advanced", "simple", "detailed", "modern", "classic", "surprising"]
_AUDIENCES = ["beginners", "experts", "teams", "students", "families", "operators", "writers", "travellers"]


@dataclass(frozen=True)
class CorpusDoc:
    id: str
    text: str
    topic: str


def synthetic_corpus(size: int, seed: int = 7) -> list[CorpusDoc]:
    """`size` short documents over a few topics; ids are zero-padded so id order is insertion order."""
    rng = random.Random(seed)
    topics = sorted(_TOPICS)
    docs = []
    for n in range(size):
        topic = topics[n % len(topics)]
        words = rng.sample(_TOPICS[topic], 3)
        text = (
            f"A {rng.choice(_ADJECTIVES)} guide that {rng.choice(_VERBS)} {words[0]} and {words[1]} "
            f"in {topic} for {rng.choice(_AUDIENCES)}, with notes on {words[2]}."
        )
        docs.append(CorpusDoc(f"doc-{n:07d}", text, topic))
    return docs


def synthetic_queries(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    topics = sorted(_TOPICS)
    queries = []
    for _ in range(count):
        topic = rng.choice(topics)
        a, b = rng.sample(_TOPICS[topic], 2)
        queries.append(f"{rng.choice(_ADJECTIVES)} {a} {b} for {rng.choice(_AUDIENCES)}")
    return queries


_PRODUCTS = [
    "printer",
    "laptop",
    "router",
    "invoice portal",
    "mobile app",
    "headset",
    "vpn client",
    "mailbox",
]
_PROBLEMS = [
    "stops responding",
    "is very slow",
    "rejects the password",
    "shows an error code",
    "drops the connection",
    "will not start",
    "loses its settings",
    "charges twice",
]
_WHEN = [
    "after the update",
    "every morning",
    "since the office move",
    "on the guest network",
    "after a restart",
]


def synthetic_tickets(size: int, seed: int = 13) -> list[CorpusDoc]:
    """`size` short support tickets (a second collection for the demo); the topic is the product."""
    rng = random.Random(seed)
    docs = []
    for n in range(size):
        product = _PRODUCTS[n % len(_PRODUCTS)]
        text = (
            f"Ticket: the {product} {rng.choice(_PROBLEMS)} {rng.choice(_WHEN)}; "
            f"reported by {rng.choice(_AUDIENCES)}."
        )
        docs.append(CorpusDoc(f"ticket-{n:07d}", text, product))
    return docs
