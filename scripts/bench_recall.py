"""Retrieval benchmark of agent memory: keyword, semantic, naive RRF and memfs's hybrid.

A deterministic corpus (no data set is downloaded): every user's private memory holds
what an agent would have written down over many sessions, one fact per entry, as
Claude Code writes them (frontmatter name/description/type, a short body): people in
the user's life (pets, jobs, birthdays, home towns, diets, hobbies, children, cars,
trips) and their work (service ports, rate limits, on-call owners, launch dates, bug
tickets, preferences). Every person and service has several entries, so a name alone
never picks the answer.

Questions are asked as an agent asks them, in the user's words, each with the entry
holding the answer:
  - paraphrase: little or no word overlap beyond the name ("what pet does Caroline have?"
    for "Caroline has a guinea pig named Oscar");
  - lexical: the entry's own rare terms, numbers, dates, ticket ids ("what was INC-4821 about?").

Each question runs in its user's scope (as that user would search), through memfs's own
ranking code (memfs.index, the same functions the mount calls): recall@1 and recall@5
per ranker, overall and per kind of question.

Usage: .venv/bin/python scripts/bench_recall.py [--users N] [--seed S] [--json FILE]
(`scripts/bench --recall`). Runs in-process; needs no mount and no root.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from memfs.index import Index, embed, fusion  # noqa: E402
from memfs.index.query import split_filters, words_of  # noqa: E402
from memfs.index.schema import doc_key  # noqa: E402
from memfs.layout import scope_dir  # noqa: E402
from memfs.policy import Kind, Scope  # noqa: E402
from memfs.store import Store  # noqa: E402

PEOPLE = (
    "Caroline Melanie Jordan Priya Tomasz Aisha Diego Hannah Kenji Fatima Oliver Ingrid Mateo "
    "Chloe Rahul Sofia Marcus Leila Owen Yuki Nadia Gabriel Elena Samuel Zara Victor Amara "
    "Felix Ruth Dmitri Grace Hugo Imani Lukas Maya Nikolai Rosa Theo Wendy Xavier"
).split()
PETS = [
    ("guinea pig", "Oscar"),
    ("golden retriever", "Biscuit"),
    ("tabby cat", "Miso"),
    ("parrot", "Kiwi"),
    ("bearded dragon", "Spike"),
    ("corgi", "Waffles"),
    ("rabbit", "Clover"),
    ("goldfish", "Bubbles"),
    ("hamster", "Peanut"),
    ("husky", "Luna"),
]
JOBS = [
    ("nurse", "St. Mary's Hospital"),
    ("civil engineer", "Arup"),
    ("high school teacher", "Lincoln High"),
    ("pastry chef", "Le Petit Four"),
    ("data analyst", "Spotify"),
    ("architect", "Foster + Partners"),
    ("paramedic", "the county ambulance service"),
    ("lawyer", "Baker McKenzie"),
    ("pilot", "Lufthansa"),
    ("dentist", "a clinic downtown"),
]
CITIES = "Lisbon Osaka Nairobi Krakow Porto Valparaiso Tromso Adelaide Bergen Cusco Tbilisi Halifax".split()
COUNTRIES = "Iceland Vietnam Morocco Peru Japan Norway Portugal Chile Georgia Kenya Canada Greece".split()
FOODS = "peanuts shellfish gluten dairy eggs sesame soy strawberries".split()
INSTRUMENTS = "cello trumpet bass guitar drums violin saxophone banjo accordion".split()
CARS = [
    ("red", "Volvo estate"),
    ("silver", "Toyota Prius"),
    ("green", "Subaru Outback"),
    ("blue", "VW camper van"),
]
MONTHS = "January February March April May June July August September October November December".split()
KID_NAMES = "Ava Leo Mia Noah Ivy Eli Ada Finn Ruby Max Lily Sam".split()
SERVICES = (
    "billing ledger gateway notifier scheduler search-api thumbnailer auth-proxy exporter "
    "ingest webhooks reports"
).split()
PROJECTS = "Falcon Nimbus Atlas Orion Juniper Cascade Beacon Harbor".split()
SYMPTOMS = [
    "memory leak after every deploy",
    "timeouts when the cache is cold",
    "duplicate emails sent to customers",
    "wrong currency on invoices",
    "crash on empty upload",
    "slow queries on the orders table",
]


@dataclass
class Fact:
    slug: str  # the entry's file name (without .md) and frontmatter name
    type: str
    description: str
    body: str
    questions: list[tuple[str, str]]  # (kind, question)


def person_facts(rnd: random.Random, p: str) -> list[Fact]:
    kind, pet = rnd.choice(PETS)
    job, employer = rnd.choice(JOBS)
    month, day = rnd.choice(MONTHS), rnd.randint(1, 28)
    city = rnd.choice(CITIES)
    food = rnd.choice(FOODS)
    inst = rnd.choice(INSTRUMENTS)
    n_kids = rnd.randint(1, 3)
    kids = rnd.sample(KID_NAMES, n_kids)
    color, car = rnd.choice(CARS)
    country, trip_month = rnd.choice(COUNTRIES), rnd.choice(MONTHS)
    lo = p.lower()
    facts = [
        Fact(
            f"{lo}-{kind.replace(' ', '-')}",
            "user",
            f"{p}'s {kind} {pet}",
            f"{p} has a {kind} named {pet}. {pet} came home with {p} last year.",
            [
                ("paraphrase", f"what pet does {p} have?"),
                ("paraphrase", f"which animal lives with {p}?"),
                ("lexical", f"what is the name of {p}'s {kind}?"),
            ],
        ),
        Fact(
            f"{lo}-works-at-{employer.split()[0].lower().strip('.')}",
            "user",
            f"{p} is a {job} at {employer}",
            f"{p} works as a {job} at {employer}. Started there after moving.",
            [
                ("paraphrase", f"what does {p} do for a living?"),
                ("paraphrase", f"what is {p}'s profession?"),
                ("lexical", f"where does {p} work as a {job}?"),
            ],
        ),
        Fact(
            f"{lo}-birthday",
            "user",
            f"{p}'s birthday: {month} {day}",
            f"{p}'s birthday is on {month} {day}. Likes a quiet dinner rather than a party.",
            [
                ("paraphrase", f"when was {p} born?"),
                ("paraphrase", f"what date should I send {p} a card?"),
                ("lexical", f"whose birthday is {month} {day}?"),
            ],
        ),
        Fact(
            f"{lo}-grew-up-in-{city.lower()}",
            "user",
            f"{p} grew up in {city}",
            f"{p} grew up in {city} and still visits family there every summer.",
            [
                ("paraphrase", f"where is {p} originally from?"),
                ("paraphrase", f"what is {p}'s hometown?"),
                ("lexical", f"who grew up in {city}?"),
            ],
        ),
        Fact(
            f"{lo}-allergic-{food}",
            "user",
            f"{p}: {food} allergy",
            f"{p} is allergic to {food}. Check the menu before booking a restaurant.",
            [
                ("paraphrase", f"what can't {p} eat?"),
                ("paraphrase", f"does {p} have any dietary restrictions?"),
                ("lexical", f"who is allergic to {food}?"),
            ],
        ),
        Fact(
            f"{lo}-plays-{inst.replace(' ', '-')}",
            "user",
            f"{p} plays {inst} in a band",
            f"{p} plays the {inst} in a local band on weekends. Gig at the pub next month.",
            [
                ("paraphrase", f"what musical instrument is {p} into?"),
                ("paraphrase", f"what does {p} do on weekends for fun?"),
                ("lexical", f"who plays the {inst}?"),
            ],
        ),
        Fact(
            f"{lo}-kids",
            "user",
            f"{p}'s kids: {', '.join(kids)}",
            f"{p} has {n_kids} kid{'s' if n_kids > 1 else ''}: {', '.join(kids)}.",
            [
                ("paraphrase", f"how many children does {p} have?"),
                ("paraphrase", f"is {p} a parent?"),
                ("lexical", f"whose kid is {kids[0]}?"),
            ],
        ),
        Fact(
            f"{lo}-drives-{car.split()[0].lower()}",
            "user",
            f"{p} drives a {color} {car}",
            f"{p} drives a {color} {car}, bought second hand.",
            [
                ("paraphrase", f"what vehicle does {p} own?"),
                ("paraphrase", f"what kind of automobile has {p} got?"),
                ("lexical", f"who has the {color} {car}?"),
            ],
        ),
        Fact(
            f"{lo}-trip-{country.lower()}",
            "user",
            f"{p} plans a trip to {country} in {trip_month}",
            f"{p} is planning a trip to {country} in {trip_month}, two weeks, flights not booked yet.",
            [
                ("paraphrase", f"where is {p} going on vacation?"),
                ("paraphrase", f"what holiday is {p} planning?"),
                ("lexical", f"who is going to {country}?"),
            ],
        ),
    ]
    return rnd.sample(facts, 6)


def service_facts(rnd: random.Random, svc: str, owner: str, ticket: int) -> list[Fact]:
    port = rnd.randint(2000, 9999)
    limit = rnd.choice([60, 120, 300, 600, 1000, 2500])
    symptom = rnd.choice(SYMPTOMS)
    return [
        Fact(
            f"{svc}-port",
            "reference",
            f"{svc} listens on port {port}",
            f"The {svc} service listens on port {port} inside the cluster; TLS terminates at the mesh.",
            [
                ("lexical", f"which port does {svc} listen on?"),
                ("paraphrase", f"how do I connect to {svc} over the network?"),
                ("lexical", f"what runs on port {port}?"),
            ],
        ),
        Fact(
            f"{svc}-rate-limit",
            "reference",
            f"{svc} API: {limit} requests per minute",
            f"The {svc} API allows {limit} requests per minute per client; above that it answers 429.",
            [
                ("paraphrase", f"how hard can I hit {svc} before it throttles me?"),
                ("lexical", f"what is the rate limit of the {svc} API?"),
            ],
        ),
        Fact(
            f"{svc}-oncall",
            "project",
            f"{owner} owns {svc} on-call",
            f"{owner} owns the {svc} on-call rotation this quarter; escalate to the lead after 30 min.",
            [
                ("paraphrase", f"who should I page when {svc} breaks?"),
                ("lexical", f"who owns the {svc} on-call rotation?"),
            ],
        ),
        Fact(
            f"inc-{ticket}",
            "project",
            f"INC-{ticket}: {svc} {symptom}",
            f"Bug INC-{ticket} in {svc}: {symptom}. Workaround: restart the worker pool.",
            [
                ("lexical", f"what was INC-{ticket} about?"),
                ("paraphrase", f"what known problem does {svc} have?"),
            ],
        ),
    ]


def project_facts(rnd: random.Random, project: str) -> list[Fact]:
    month, day = rnd.choice(MONTHS), rnd.randint(1, 28)
    tool, other = rnd.sample(["pytest", "unittest", "tabs", "spaces", "squash merges", "rebases"], 2)
    return [
        Fact(
            f"{project.lower()}-launch",
            "project",
            f"{project} launch: {month} {day}",
            f"The {project} launch is scheduled for {month} {day}; code freeze a week before.",
            [
                ("paraphrase", f"when does {project} ship?"),
                ("lexical", f"what date is the {project} launch?"),
            ],
        ),
        Fact(
            f"{project.lower()}-prefers-{tool.replace(' ', '-')}",
            "feedback",
            f"In {project}, use {tool}, not {other}",
            f"User prefers {tool} over {other} in {project}; said so twice in review.",
            [
                ("paraphrase", f"what convention should I follow in {project}?"),
                ("lexical", f"{tool} or {other} for {project}?"),
            ],
        ),
    ]


def user_corpus(rnd: random.Random, n_people: int, n_services: int, n_projects: int) -> list[Fact]:
    people = rnd.sample(PEOPLE, n_people)
    facts: list[Fact] = []
    for p in people:
        facts += person_facts(rnd, p)
    for svc in rnd.sample(SERVICES, n_services):
        facts += service_facts(rnd, svc, rnd.choice(people), rnd.randint(1000, 9999))
    for project in rnd.sample(PROJECTS, n_projects):
        facts += project_facts(rnd, project)
    seen: set[str] = set()
    out = []
    for f in facts:  # two facts may draw one slug (two services, one ticket number): keep one
        if f.slug not in seen:
            seen.add(f.slug)
            out.append(f)
    return out


def entry_text(f: Fact) -> str:
    return f"---\nname: {f.slug}\ndescription: {json.dumps(f.description)}\ntype: {f.type}\n---\n\n{f.body}\n"


def build(data: Path, users: int, seed: int, per_user_questions: int, memory_md: bool = False):
    """Write every user's entries under DATA (and, with memory_md, a MEMORY.md with a hook
    line per entry, as Claude Code keeps one); return [(user, kind, question, gold path)]."""
    rnd = random.Random(seed)
    Store.init_layout(data)
    questions = []
    for u in range(users):
        user = f"u{u:03d}"
        root = scope_dir(data, Scope(Kind.PRIVATE, user))
        root.mkdir(parents=True, exist_ok=True)
        facts = user_corpus(rnd, n_people=8, n_services=5, n_projects=3)
        for f in facts:
            (root / f"{f.slug}.md").write_text(entry_text(f))
        if memory_md:
            hooks = "".join(f"- [{f.slug}]({f.slug}.md) — {f.description}\n" for f in facts)
            (root / "MEMORY.md").write_text(hooks)
        pool = [(kind, q, f"{f.slug}.md") for f in facts for kind, q in f.questions]
        for kind, q, gold in rnd.sample(pool, min(per_user_questions, len(pool))):
            questions.append((user, kind, q, gold))
    return questions


def recall(ranked: list[str], gold: str, k: int) -> int:
    return int(gold in ranked[:k])


def evaluate(index: Index, questions, depth: int = 30) -> dict:
    names = ["keyword", "semantic", "rrf", "hybrid"]
    per: dict[str, dict[str, list[int]]] = {n: {} for n in names}
    for user, kind, q, gold in questions:
        scope = Scope(Kind.PRIVATE, user)
        text, filters = split_filters(q)
        kw, _ = index.searcher._keyword([scope], text, filters, depth)
        kw_pairs = [(f.key, f.score) for f in kw]
        sem, _ = index.searcher._semantic([scope], words_of(text), filters, depth)
        sem_pairs = [(key, c) for c, _s, key in sem]
        key = doc_key(scope, gold.encode())
        hybrid_hits, _ = index.searcher.search([scope], q, 5)
        rankings = {
            "keyword": [k for k, _ in kw_pairs],
            "semantic": [k for k, _ in sem_pairs],
            "rrf": [k for k, _s, _r in fusion.rrf(kw_pairs, sem_pairs)],
            "hybrid": [doc_key(h.scope, h.relpath.encode()) for h in hybrid_hits],
        }
        for n in names:
            for bucket in ("all", kind):
                per[n].setdefault(bucket, []).extend([])
                per[n].setdefault(f"{bucket}@1", []).append(recall(rankings[n], key, 1))
                per[n].setdefault(f"{bucket}@5", []).append(recall(rankings[n], key, 5))
    out = {}
    for n in names:
        out[n] = {b: round(sum(v) / len(v), 4) for b, v in per[n].items() if v}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--questions", type=int, default=15, help="per user")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--memory-md", action="store_true", help="each user also has a MEMORY.md of hook lines")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="memfs-recall-") as tmp:
        data = Path(tmp)
        questions = build(data, args.users, args.seed, args.questions, args.memory_md)
        t0 = time.perf_counter()
        index = Index(data, Store(data, 1 << 20), embedder=embed.WordLlama())
        n = index.rebuild()
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = evaluate(index, questions)
        eval_s = time.perf_counter() - t0
        index.close()
    kinds = sorted({k for _u, k, _q, _g in questions})
    print(
        f"{n} entries, {args.users} users, {len(questions)} questions "
        f"({', '.join(f'{sum(1 for q in questions if q[1] == k)} {k}' for k in kinds)}); "
        f"indexed in {build_s:.1f} s, asked in {eval_s:.1f} s"
    )
    cols = ["all@1", "all@5"] + [f"{k}@{n}" for k in kinds for n in (1, 5)]
    print(f"{'ranker':<10}" + "".join(f"{c:>15}" for c in cols))
    for name, r in res.items():
        print(f"{name:<10}" + "".join(f"{r.get(c, 0):>15.3f}" for c in cols))
    if args.json:
        Path(args.json).write_text(json.dumps({"questions": len(questions), "results": res}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
