"""Base requests of the instruction-following task, written for this project (not IFEval's prompts).

Six kinds, ten each: short stories, emails, summaries of a given passage, questions on a given context,
descriptions, advice. Each is answerable in about 64-96 tokens by a small chat model, and carries ``words``: three or
four topic words a real answer is likely to use (for keyword instructions, forbidden-word instructions, and the
check that an answer is about the request at all). ``passage`` requests hold their text inside the request.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    """One base request: ``kind`` (story, email, summary, qa, description, advice), its ``text`` and topic ``words``
    (lower case)."""

    kind: str
    text: str
    words: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Request.kind must be one of {KINDS}; got {self.kind!r}.")
        if len(self.words) < 3 or any(w != w.lower() or not w.isalpha() for w in self.words):
            raise ValueError(
                f"Request {self.text[:40]!r} needs three or more lower-case topic words; got {self.words}."
            )

    @property
    def has_passage(self) -> bool:
        """Whether the request quotes a passage or a context (too long to ask the model to repeat)."""
        return self.kind in ("summary", "qa")


KINDS = ("story", "email", "summary", "qa", "description", "advice")

R = Request
REQUESTS: tuple[Request, ...] = (
    R(
        "story",
        "Write a very short story about a lighthouse keeper who finds a lost dog.",
        ("dog", "lighthouse", "keeper", "sea"),
    ),
    R(
        "story",
        "Write a short story about a girl who builds a kite with her grandfather.",
        ("kite", "wind", "grandfather", "girl"),
    ),
    R(
        "story",
        "Tell a brief story about a baker who oversleeps on the morning of a big order.",
        ("bread", "baker", "morning", "oven"),
    ),
    R("story", "Write a short tale about a robot that learns to water plants.", ("robot", "plants", "water", "garden")),
    R("story", "Write a tiny story about two friends lost in a snowstorm.", ("snow", "friends", "cold", "storm")),
    R("story", "Tell a short story about a cat that rides the night bus.", ("cat", "bus", "night", "driver")),
    R("story", "Write a short story about a fisherman who catches a golden boot.", ("fish", "boot", "boat", "river")),
    R(
        "story",
        "Write a brief story about a child's first day at a new school.",
        ("school", "child", "teacher", "friend"),
    ),
    R("story", "Tell a very short story about a violin found in an attic.", ("violin", "attic", "music", "dust")),
    R(
        "story",
        "Write a short story about a gardener who grows a giant pumpkin.",
        ("pumpkin", "garden", "gardener", "fair"),
    ),
    R(
        "email",
        "Write a short email to a colleague asking to move tomorrow's meeting to Friday.",
        ("meeting", "friday", "tomorrow", "time"),
    ),
    R("email", "Write a brief email to a landlord about a leaking kitchen tap.", ("tap", "kitchen", "leak", "repair")),
    R(
        "email",
        "Write a short email thanking a neighbour for watering your plants.",
        ("plants", "neighbour", "thank", "water"),
    ),
    R(
        "email",
        "Write a short email inviting your team to a picnic on Saturday.",
        ("picnic", "saturday", "team", "food"),
    ),
    R(
        "email",
        "Write a brief email to a library asking to renew a borrowed book.",
        ("book", "library", "renew", "loan"),
    ),
    R(
        "email",
        "Write a short email to a client confirming the delivery date of an order.",
        ("order", "delivery", "date", "client"),
    ),
    R(
        "email",
        "Write a short email asking a professor for an extension on an essay.",
        ("essay", "extension", "deadline", "week"),
    ),
    R(
        "email",
        "Write a brief email to a hotel asking whether breakfast is included.",
        ("breakfast", "hotel", "room", "stay"),
    ),
    R(
        "email",
        "Write a short email apologising to a friend for missing their birthday party.",
        ("birthday", "party", "sorry", "friend"),
    ),
    R("email", "Write a short email to a gym cancelling a membership.", ("membership", "gym", "cancel", "month")),
    R(
        "summary",
        "Summarise this passage: Honeybees communicate the location of flowers through a waggle dance. The "
        "angle of the dance shows the direction relative to the sun, and its length shows the distance.",
        ("bees", "dance", "flowers", "distance"),
    ),
    R(
        "summary",
        "Summarise this passage: The town library will close for renovation in March. Books can still be "
        "borrowed from a temporary branch in the community centre, which opens on weekdays.",
        ("library", "renovation", "books", "branch"),
    ),
    R(
        "summary",
        "Summarise this passage: Cast iron pans last for decades if they are dried straight after washing "
        "and rubbed with a thin layer of oil, which stops rust and keeps food from sticking.",
        ("pans", "oil", "rust", "iron"),
    ),
    R(
        "summary",
        "Summarise this passage: A new bike lane now links the train station to the university. Cyclists "
        "save about ten minutes, and the city plans to add two more lanes next year.",
        ("bike", "lane", "station", "cyclists"),
    ),
    R(
        "summary",
        "Summarise this passage: Tomatoes ripen faster when stored next to bananas, because bananas give off "
        "ethylene, a gas that speeds up ripening in many fruits.",
        ("tomatoes", "bananas", "gas", "ripening"),
    ),
    R(
        "summary",
        "Summarise this passage: The museum's new exhibition shows maps drawn by sailors over four "
        "centuries. Visitors can compare how coastlines were imagined before satellites existed.",
        ("maps", "museum", "sailors", "exhibition"),
    ),
    R(
        "summary",
        "Summarise this passage: Sleep helps the brain store memories. Students who slept after studying "
        "remembered more words the next day than students who stayed awake.",
        ("sleep", "memory", "students", "brain"),
    ),
    R(
        "summary",
        "Summarise this passage: The bakery on Elm Street now sells bread made from local grain. The owner "
        "says the flour costs more but tastes better and supports nearby farms.",
        ("bakery", "bread", "grain", "farms"),
    ),
    R(
        "summary",
        "Summarise this passage: Volunteers planted three hundred trees along the river last weekend. The "
        "trees will shade the water and give birds new places to nest.",
        ("trees", "river", "volunteers", "birds"),
    ),
    R(
        "summary",
        "Summarise this passage: Octopuses can change colour in less than a second. They use special skin "
        "cells to hide from predators and to signal to other octopuses.",
        ("octopus", "colour", "skin", "predators"),
    ),
    R(
        "qa",
        "Context: The ferry to the island leaves the harbour at nine in the morning and returns at five. Tickets "
        "cost twelve euros. Question: When does the ferry return?",
        ("ferry", "five", "island", "harbour"),
    ),
    R(
        "qa",
        "Context: Mara planted carrots in April and harvested them in July. Her neighbour gave her the seeds. "
        "Question: Who gave Mara the seeds?",
        ("neighbour", "seeds", "carrots", "mara"),
    ),
    R(
        "qa",
        "Context: The concert was moved from the park to the town hall because of rain. It still starts at seven. "
        "Question: Where will the concert take place?",
        ("concert", "hall", "town", "rain"),
    ),
    R(
        "qa",
        "Context: The recipe needs two eggs, a cup of flour and a pinch of salt. The batter rests for an hour. "
        "Question: How long does the batter rest?",
        ("batter", "hour", "rest", "recipe"),
    ),
    R(
        "qa",
        "Context: Leo's train was delayed by forty minutes, so he missed the opening talk and arrived at lunch. "
        "Question: Why did Leo miss the opening talk?",
        ("train", "delayed", "talk", "leo"),
    ),
    R(
        "qa",
        "Context: The school's chess club meets on Tuesdays in room twelve. New members are welcome. Question: "
        "When does the chess club meet?",
        ("chess", "club", "tuesdays", "room"),
    ),
    R(
        "qa",
        "Context: The blue jacket costs forty dollars and the green one costs fifty. Only the green one is "
        "waterproof. Question: Which jacket is waterproof?",
        ("jacket", "green", "waterproof", "blue"),
    ),
    R(
        "qa",
        "Context: Anna walks her dog at six every morning before work. On weekends she sleeps until eight. "
        "Question: What does Anna do before work?",
        ("dog", "walks", "anna", "morning"),
    ),
    R(
        "qa",
        "Context: The old bridge was closed for repairs, so traffic now uses the ferry road. The repairs end in "
        "June. Question: When do the repairs end?",
        ("bridge", "june", "repairs", "traffic"),
    ),
    R(
        "qa",
        "Context: The museum is free on Sundays, but special exhibitions cost eight euros. It closes at six. "
        "Question: On which day is the museum free?",
        ("museum", "sunday", "free", "exhibitions"),
    ),
    R("description", "Describe a sunset over the sea.", ("sun", "sea", "sky", "waves")),
    R("description", "Describe a busy market on a Saturday morning.", ("market", "stalls", "fruit", "people")),
    R("description", "Describe the inside of an old train station.", ("station", "train", "platform", "clock")),
    R("description", "Describe a forest after heavy rain.", ("forest", "rain", "trees", "leaves")),
    R("description", "Describe a cosy kitchen in winter.", ("kitchen", "warm", "winter", "soup")),
    R("description", "Describe what a city street sounds like at night.", ("street", "night", "cars", "city")),
    R("description", "Describe a small fishing harbour at dawn.", ("boats", "harbour", "dawn", "fishermen")),
    R("description", "Describe a child's bedroom full of toys.", ("toys", "bed", "bedroom", "books")),
    R("description", "Describe a mountain lake in summer.", ("lake", "mountain", "water", "summer")),
    R("description", "Describe a crowded football stadium before a match.", ("stadium", "fans", "match", "crowd")),
    R("advice", "Give advice to someone who wants to start running.", ("running", "shoes", "pace", "rest")),
    R("advice", "Give tips for keeping houseplants alive.", ("plants", "water", "light", "soil")),
    R("advice", "Give advice on preparing for a job interview.", ("interview", "questions", "company", "practice")),
    R("advice", "Give tips for sleeping better at night.", ("sleep", "bed", "screen", "routine")),
    R("advice", "Give advice to a student who is learning to cook.", ("cook", "recipes", "kitchen", "food")),
    R("advice", "Give tips for saving money on groceries.", ("money", "list", "groceries", "prices")),
    R("advice", "Give advice on making friends in a new city.", ("friends", "city", "clubs", "people")),
    R("advice", "Give tips for studying for an exam.", ("exam", "study", "notes", "breaks")),
    R("advice", "Give advice to someone adopting their first cat.", ("cat", "food", "litter", "vet")),
    R("advice", "Give tips for travelling with only a small backpack.", ("backpack", "clothes", "travel", "pack")),
)
"""The 60 base requests."""
