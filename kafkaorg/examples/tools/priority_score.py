"""Score a triaged task: its priority, plus a little for urgent words in the title."""

WEIGHTS = {"high": 70, "medium": 40, "low": 10}
URGENT_WORDS = ("outage", "incident", "spike", "security", "tls", "certificate")


def run(args: dict) -> dict:
    title = str(args.get("title", ""))
    priority = str(args.get("priority", "low")).lower()
    score = WEIGHTS.get(priority, 0)
    urgent = [w for w in URGENT_WORDS if w in title.lower()]
    score = min(100, score + 10 * len(urgent))
    return {
        "title": title,
        "priority": priority,
        "score": score,
        "urgent_words": urgent,
        "requested_by": args.get("requested_by"),
    }
