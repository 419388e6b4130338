"""What people in each of the 28 BiasBios occupations do, where, with what: the material of implied biographies.

Real BiasBios ``hard_text`` drops a bio's first sentence, the one that names the occupation; what is left implies it
through duties, workplaces, tools, training and colleagues. :mod:`pasta_lens.tasks.implied_bios` writes bios from
these facts. For each occupation:

* ``duties``: verb phrases in the base form ("prepare tax returns"), conjugated by the generator;
* ``workplaces``: where the work happens, with its preposition, at, in, on or with ("at a mid-sized firm");
* ``tools``: noun phrases ("spreadsheets and ledger software");
* ``training``: qualifications one earns ("a master's degree in taxation");
* ``colleagues``: plural noun phrases of the people worked with;
* ``milestones``: past-tense verb phrases ("untangled the books of a bankrupt bakery");
* ``forbidden``: regular expressions (matched without case at the start of a word, hyphens read as spaces) of the
  words that would *name* the occupation: its label, its word family and its synonyms (those of
  :data:`pasta_lens.metrics.OCCUPATION_NAMES` and a few more). No bio of the occupation may contain one.

Give-away or implication? A word is forbidden when it is the answer or a near-copy of it (its stem or a synonym:
"nursing" for a nurse, "lawyer" for an attorney, "surgery" for a surgeon, "yoga" for a yoga teacher). Domain words
that only make the answer likely stay ("ward", "law firm", "operating theatre", "sun salutations"), as in real bios;
other occupations' names may appear as colleagues ("works beside surgeons" in a nurse's bio), a realistic distractor.

Held-out phrasing: the last item of every list with four or more items appears only in *test* bios
(:func:`split_items`), so the test split also measures phrasings no profile was trained or selected on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OccupationFacts:
    """The facts of one occupation (see the module docstring)."""

    duties: tuple[str, ...]
    workplaces: tuple[str, ...]
    tools: tuple[str, ...]
    training: tuple[str, ...]
    colleagues: tuple[str, ...]
    milestones: tuple[str, ...]
    forbidden: tuple[str, ...]

    def __post_init__(self) -> None:
        least = {
            "duties": 4,
            "workplaces": 4,
            "tools": 4,
            "training": 2,
            "colleagues": 2,
            "milestones": 2,
            "forbidden": 1,
        }
        for name, n in least.items():
            if len(getattr(self, name)) < n:
                raise ValueError(
                    f"OccupationFacts.{name} needs at least {n} items (the last of a list of four is "
                    "held out for the test split); add more."
                )


def split_items(items: tuple[str, ...], split: str) -> tuple[str, ...]:
    """The items a split may use: test uses all; train and validation all but the last of a list of four or more.

    Example:
        >>> split_items(("a", "b", "c", "d"), "train"), split_items(("a", "b", "c", "d"), "test")
        (('a', 'b', 'c'), ('a', 'b', 'c', 'd'))
    """
    return items if split == "test" or len(items) < 4 else items[:-1]


F = OccupationFacts
FACTS: dict[str, OccupationFacts] = {
    "accountant": F(
        (
            "prepare tax returns for small businesses",
            "reconcile ledgers at the end of each quarter",
            "audit the books of local charities",
            "advise clients on payroll and deductions",
            "close the monthly balance sheets",
            "walk clients through their income statements",
        ),
        (
            "at a mid-sized firm downtown",
            "in the finance office of a hospital group",
            "in a small office above a bakery",
            "at one of the big four auditing houses",
        ),
        ("spreadsheets and ledger software", "a ten-key calculator", "tax filing software", "pivot tables"),
        ("a master's degree in taxation", "a chartered qualification in financial reporting", "a degree in finance"),
        ("tax partners", "the firm's auditors", "bank loan officers"),
        (
            "untangled the books of a bankrupt bakery",
            "found a payroll error worth two million",
            "passed the final licensing exam on the first try",
        ),
        (r"account", r"bookkeep", r"cpa\b", r"certified public"),
    ),
    "architect": F(
        (
            "draw floor plans for family homes",
            "apply for building permits",
            "lead site visits with contractors",
            "sketch facades for new libraries",
            "review structural drawings with engineers",
            "redesign old warehouses as lofts",
        ),
        (
            "at a studio that designs schools",
            "at a practice known for timber buildings",
            "in the planning office of the city",
            "at a firm that restores historic town halls",
        ),
        ("CAD software and scale models", "tracing paper and a drafting table", "3D renderings", "laser-cut models"),
        ("a master's degree in building design", "a licence to sign off on building plans"),
        ("structural engineers", "planning officers", "builders and surveyors"),
        (
            "won a competition for a new public library",
            "turned a disused factory into forty flats",
            "designed a school that uses no gas at all",
        ),
        (r"architect",),
    ),
    "attorney": F(
        (
            "represent tenants in eviction cases",
            "draft contracts for tech start-ups",
            "argue motions in court",
            "take depositions from witnesses",
            "negotiate settlements for injured workers",
            "advise families on wills and estates",
        ),
        (
            "at a law firm in the financial district",
            "at a legal aid clinic",
            "in the district prosecutor's office",
            "at a boutique firm that handles patent disputes",
        ),
        ("case files and legal databases", "a stack of briefs", "court filing systems", "the state code books"),
        ("a law degree", "a licence to practise before the courts", "a master's degree in tax law"),
        ("paralegals", "judges and court clerks", "the firm's partners"),
        (
            "won an appeal before the state supreme court",
            "settled a class action for factory workers",
            "passed the bar exam in two states",
        ),
        (r"attorney", r"lawyer", r"barrister", r"solicitor", r"litigator", r"counsel", r"advocate"),
    ),
    "chiropractor": F(
        (
            "adjust the spines of patients with back pain",
            "treat neck stiffness from long hours at desks",
            "work on the posture of office workers",
            "manipulate joints to ease headaches",
            "assess the alignment of the vertebrae",
            "help runners recover from hip pain",
        ),
        (
            "at a wellness clinic in the suburbs",
            "at a sports injury centre",
            "at a small practice near the station",
            "at a rehabilitation centre for athletes",
        ),
        ("an adjusting table", "spinal x-rays", "a posture scanner", "activator instruments"),
        ("a doctorate in spinal health", "a licence in spinal manipulation"),
        ("physiotherapists", "massage therapists", "sports coaches"),
        (
            "treated the players of a professional rugby team",
            "opened a second clinic",
            "taught a workshop on spinal alignment",
        ),
        (r"chiropract",),
    ),
    "comedian": F(
        (
            "write jokes every morning",
            "perform five-minute sets at open-mic nights",
            "work the crowd at late shows",
            "tour small clubs across the country",
            "host a weekly podcast of improvised sketches",
            "test new bits on friends before a show",
        ),
        (
            "at clubs across the city",
            "on the late-night circuit",
            "at festivals every summer",
            "in a basement club on Thursdays",
        ),
        ("a notebook of half-finished jokes", "a microphone and a stool", "a voice recorder", "a setlist on a napkin"),
        ("a certificate in improvisation", "a diploma in performing arts"),
        ("headliners and hosts", "club bookers", "other writers of sketches"),
        ("sold out a run at a fringe festival", "recorded an hour-long special", "opened for a famous headliner"),
        (r"comed", r"comic", r"stand ?up", r"humou?rist"),
    ),
    "composer": F(
        (
            "write scores for string quartets",
            "orchestrate music for short films",
            "arrange hymns for a choir",
            "write music for video games",
            "commission pieces from young players",
            "set poems to music for voice",
        ),
        ("at a conservatory", "in a home studio with a piano", "with a chamber orchestra", "with a theatre company"),
        ("notation software", "a grand piano and manuscript paper", "a sample library", "a metronome"),
        ("a master's degree in music theory", "a fellowship in orchestration"),
        ("conductors", "string players", "film directors"),
        (
            "premiered a symphony with the city orchestra",
            "scored a documentary about whales",
            "won a prize for a piece for cello",
        ),
        (r"compos",),
    ),
    "dentist": F(
        (
            "fill cavities",
            "perform root canals",
            "remove plaque from teeth",
            "fit crowns and bridges",
            "check children's molars for decay",
            "pull wisdom teeth",
        ),
        (
            "at a family practice in the suburbs",
            "at a clinic for children",
            "at a community health centre",
            "at a practice near the university",
        ),
        ("a drill and x-rays of the jaw", "a mirror and a probe", "an intraoral camera", "fluoride varnish"),
        ("a doctorate in oral health", "a certificate in oral medicine"),
        ("hygienists", "orthodontists", "oral surgeons"),
        ("ran a free check-up day for the homeless", "opened a second clinic", "trained in sedation care"),
        (r"dent", r"odont"),
    ),
    "dietitian": F(
        (
            "plan meals for patients with diabetes",
            "counsel families on healthy eating",
            "design menus for a hospital kitchen",
            "track the vitamin intake of athletes",
            "advise people with food allergies",
            "run workshops on balanced lunches",
        ),
        (
            "at a hospital clinic",
            "at a sports club",
            "in the kitchen office of a care home",
            "at a clinic for eating disorders",
        ),
        ("food diaries and calorie tables", "body composition scales", "meal planning software", "a food scale"),
        ("a degree in human nutrition", "a licence in clinical nutrition"),
        ("doctors and nurses", "hospital chefs", "sports coaches"),
        (
            "wrote a cookbook for people with kidney disease",
            "redesigned the menu of a school district",
            "helped a team of rowers gain strength",
        ),
        (r"diet", r"nutritionist"),
    ),
    "dj": F(
        (
            "spin vinyl at weekend parties",
            "mix sets at clubs until dawn",
            "play records at weddings",
            "host a late-night radio show of house music",
            "remix tracks for other artists",
            "read the dance floor to choose the tempo",
        ),
        ("at nightclubs downtown", "at festivals every summer", "at a beach bar", "at a student radio station"),
        ("two turntables and a mixer", "headphones and a crossfader", "a crate of records", "a laptop of samples"),
        ("a diploma in music technology", "a certificate in sound engineering"),
        ("promoters", "sound engineers", "producers"),
        (
            "played the main stage of a summer festival",
            "released a remix that topped the charts",
            "held a residency at a famous club",
        ),
        (r"dj", r"deejay", r"disc ?jockey", r"disk ?jockey"),
    ),
    "filmmaker": F(
        (
            "shoot documentaries about rural life",
            "direct short films",
            "edit footage late into the night",
            "write screenplays",
            "raise money for independent features",
            "cast actors for a new feature",
        ),
        (
            "at an independent studio",
            "on location in the mountains",
            "at a small production company",
            "at a public broadcaster",
        ),
        ("a camera rig and editing software", "a boom microphone", "storyboards", "a drone for aerial shots"),
        ("a master's degree in cinema", "a certificate in screenwriting"),
        ("cinematographers", "editors and producers", "actors"),
        (
            "premiered a documentary at a major festival",
            "won an award for a short film",
            "crowd-funded a first feature",
        ),
        (r"film ?mak", r"film maker", r"film director", r"movie director", r"movie ?mak", r"director"),
    ),
    "interior_designer": F(
        (
            "choose fabrics and colours for living rooms",
            "plan kitchen layouts",
            "furnish boutique hotels",
            "source lamps and rugs for clients",
            "redesign offices for small companies",
            "stage homes before they are sold",
        ),
        (
            "at a studio that furnishes hotels",
            "in a showroom in the old town",
            "at a chain of restaurants",
            "at a property developer",
        ),
        ("mood boards and fabric swatches", "paint samples", "floor plans and 3D renderings", "tile samples"),
        ("a degree in spatial design", "a diploma in colour and materials"),
        ("carpenters", "architects", "furniture makers"),
        ("redid the lobby of a grand hotel", "was featured in a home magazine", "furnished a children's hospital ward"),
        (r"interior design", r"designer", r"decorat"),
    ),
    "journalist": F(
        (
            "cover city hall",
            "interview sources for investigative stories",
            "file stories on deadline",
            "write features about local schools",
            "fact-check claims made by politicians",
            "report from flooded towns",
        ),
        (
            "at a regional newspaper",
            "in the newsroom of a public radio station",
            "at an online news site",
            "at a weekly magazine",
        ),
        ("a notebook and a voice recorder", "public records requests", "a press pass", "a laptop and a phone"),
        ("a degree in media studies", "a fellowship in data reporting"),
        ("editors", "photographers", "other writers in the newsroom"),
        ("broke a story about hospital waiting lists", "won a press award", "exposed a fraud at the town council"),
        (r"journalis", r"reporter", r"correspondent", r"newsman", r"newswoman"),
    ),
    "model": F(
        (
            "walk runways at fashion week",
            "pose for clothing campaigns",
            "attend castings in the morning",
            "go to fittings for designers",
            "shoot catalogues for a sportswear brand",
            "appear in adverts for perfume",
        ),
        ("at an agency in Milan", "at agencies in Paris and New York", "at a sportswear label", "at a swimwear brand"),
        ("a portfolio of test shots", "a comp card", "heels and a garment bag", "a travel bag always packed"),
        ("a certificate in runway walking", "a certificate in fashion styling"),
        ("photographers", "stylists and makeup artists", "designers"),
        ("opened a show at fashion week", "appeared on a magazine cover", "fronted a campaign for a perfume"),
        (r"model",),
    ),
    "nurse": F(
        (
            "work night shifts on the cardiology ward",
            "hand out medication on the morning round",
            "change dressings on surgical wounds",
            "look after patients after heart operations",
            "care for newborns in intensive care",
            "triage patients in the emergency room",
        ),
        (
            "on the cardiology ward of a city hospital",
            "at a community clinic",
            "in an intensive care unit",
            "at a care home for the elderly",
        ),
        (
            "IV pumps and patient charts",
            "a stethoscope and a blood pressure cuff",
            "wound dressings",
            "a glucose meter",
        ),
        ("a degree in patient care", "a state licence in patient care", "a certificate in intensive care"),
        ("surgeons and doctors", "ward clerks", "physiotherapists"),
        (
            "was named employee of the year at the hospital",
            "trained fifty new staff on the ward",
            "helped set up a vaccination clinic",
        ),
        (r"nurs", r"\brn\b", r"midwi"),
    ),
    "painter": F(
        (
            "work in oils on large canvases",
            "work on landscapes outdoors",
            "mix colours in the studio",
            "prepare canvases for a new series",
            "show work in galleries",
            "sketch outdoors at dawn",
        ),
        (
            "in a studio by the harbour",
            "in a shared studio in an old factory",
            "at an artists' residency",
            "in a barn in the countryside",
        ),
        ("brushes, palette knives and an easel", "oils and watercolours", "linen canvases", "charcoal"),
        ("a degree in fine art", "a diploma in printmaking"),
        ("gallerists", "collectors", "other artists"),
        ("held a solo show at a city gallery", "sold a canvas to the national museum", "won a portrait prize"),
        (r"paint",),
    ),
    "paralegal": F(
        (
            "draft court filings",
            "organise case files for trials",
            "summarise depositions",
            "research case law for the partners",
            "prepare exhibits for hearings",
            "file documents with the court",
        ),
        (
            "at a law firm in the financial district",
            "at a legal aid clinic",
            "in the legal department of a bank",
            "at a firm that handles immigration cases",
        ),
        ("legal databases", "binders of exhibits", "document management software", "a label maker for exhibit binders"),
        ("a certificate in legal studies", "a degree in criminal justice"),
        ("attorneys", "court clerks", "the firm's partners"),
        (
            "organised the files of a six-week trial",
            "trained new staff in e-filing",
            "found a key precedent for an appeal",
        ),
        (r"paralegal", r"legal assistant", r"legal secretary"),
    ),
    "pastor": F(
        (
            "write Sunday sermons",
            "lead worship services",
            "visit members of the congregation in hospital",
            "officiate weddings and funerals",
            "run a youth group on Friday nights",
            "lead a weekly bible study",
        ),
        (
            "at a small church in a mining town",
            "at a large congregation in the city",
            "at a rural parish",
            "at a chapel near the university",
        ),
        ("a well-worn bible", "a pulpit and a hymnal", "the parish newsletter", "a guitar for the youth group"),
        ("a master's degree in divinity", "a diploma in theology"),
        ("church elders", "the choir", "volunteers of the food bank"),
        ("opened a shelter in the church hall", "led a mission trip abroad", "doubled the size of the congregation"),
        (r"pastor", r"minister", r"reverend", r"preach", r"clergy", r"priest", r"vicar"),
    ),
    "personal_trainer": F(
        (
            "design workout plans for busy professionals",
            "take clients through strength sessions",
            "run boot camps in the park at dawn",
            "help clients lose weight",
            "track clients' progress in lifts",
            "teach proper form on squats and deadlifts",
        ),
        ("at a gym downtown", "at a fitness studio", "in clients' homes", "at a hotel gym"),
        ("kettlebells and resistance bands", "a heart rate monitor", "a stopwatch", "barbells"),
        ("a certification in strength and conditioning", "a degree in exercise science"),
        ("gym owners", "physiotherapists", "dietitians"),
        ("helped a client run a first marathon", "opened a small studio", "won a regional powerlifting meet"),
        (r"trainer", r"personal train", r"fitness coach", r"fitness instructor", r"\bcoach", r"instructor"),
    ),
    "photographer": F(
        (
            "shoot weddings on weekends",
            "take portraits in the studio",
            "edit images late into the night",
            "cover sports events for a newspaper",
            "shoot food for restaurant menus",
            "set up lights for product shots",
        ),
        (
            "in a studio in the old town",
            "at a regional newspaper",
            "at weddings across the region",
            "at an advertising agency",
        ),
        ("cameras and lenses", "a tripod and studio lights", "editing software", "a light meter"),
        ("a degree in visual arts", "a certificate in lighting"),
        ("models and stylists", "editors", "wedding planners"),
        ("won a prize for a portrait series", "shot the cover of a travel magazine", "held a show of street scenes"),
        (r"photograph",),
    ),
    "physician": F(
        (
            "see patients with chronic illnesses",
            "diagnose infections in walk-in patients",
            "run a family practice",
            "order blood tests for routine check-ups",
            "make house calls to elderly patients",
            "manage patients with heart disease",
        ),
        (
            "at a family practice in a small town",
            "at a community health centre",
            "in the internal medicine department of a hospital",
            "at a rural clinic",
        ),
        ("a stethoscope and lab results", "patient records", "an otoscope", "prescription pads"),
        ("a medical degree", "a specialist diploma in internal medicine", "board certification in family medicine"),
        ("nurses", "specialists", "pharmacists"),
        (
            "led a study on diabetes care",
            "opened a clinic in an underserved town",
            "was voted the best family practice in the county",
        ),
        (r"physician", r"doctor", r"general practi", r"\bgp\b", r"internist", r"\bmd\b", r"m\.d"),
    ),
    "poet": F(
        (
            "write sonnets",
            "give readings at literary festivals",
            "publish chapbooks",
            "run verse workshops",
            "edit a small literary magazine",
            "write haiku every morning",
        ),
        (
            "in a cottage by the sea",
            "at a writers' residency",
            "at literary festivals",
            "in the back room of a bookshop",
        ),
        ("a notebook and a fountain pen", "a typewriter", "rhyming dictionaries", "index cards of lines"),
        ("a master's degree in creative writing", "a fellowship in verse"),
        ("editors", "other writers", "translators"),
        (
            "published a third collection of verse",
            "won a national prize for a sonnet sequence",
            "read at the opening of a festival",
        ),
        (r"poet", r"poem", r"poesy"),
    ),
    "professor": F(
        (
            "give lectures on microeconomics",
            "supervise doctoral students",
            "publish research papers",
            "sit on hiring committees",
            "run a lab that studies memory",
            "grade exams for large classes",
        ),
        (
            "at a state university",
            "at a research university",
            "in the history department of a college",
            "at a university abroad",
        ),
        ("lecture slides and journals", "grant proposals", "a lab of graduate students", "peer reviews"),
        ("a doctorate in economics", "a postdoctoral fellowship", "a research fellowship"),
        ("graduate students", "deans", "research assistants"),
        ("won a major research grant", "published a book with a university press", "became head of department"),
        (r"professor", r"\bprof\b", r"lecturer"),
    ),
    "psychologist": F(
        (
            "see clients with anxiety",
            "run therapy sessions for couples",
            "assess children for learning difficulties",
            "treat patients with depression",
            "give cognitive tests",
            "lead group sessions on grief",
        ),
        ("at a private practice", "at a mental health clinic", "at a school district", "at a veterans' hospital"),
        ("assessment tests", "session notes", "a quiet room with two armchairs", "questionnaires"),
        ("a doctorate in clinical mental health", "a licence in clinical counselling"),
        ("psychiatrists", "social workers", "school staff"),
        (
            "published a study on anxiety in teenagers",
            "opened a private practice",
            "led a trauma programme after a flood",
        ),
        (r"psycholog", r"psychotherap", r"therapist", r"counsell?or"),
    ),
    "rapper": F(
        (
            "write verses about growing up",
            "record albums",
            "perform at concerts",
            "freestyle at battles",
            "collaborate with producers",
            "tour with a live band",
        ),
        ("in a home studio", "at festivals every summer", "on tour across the country", "at clubs downtown"),
        ("a microphone and beats", "a notebook of rhymes", "a recording booth", "a drum machine"),
        ("a diploma in music production", "a certificate in music production"),
        ("producers", "other artists", "sound engineers"),
        ("released a debut album that went gold", "won a freestyle battle", "headlined a festival"),
        (r"rap", r"\bmc\b", r"emcee", r"hip hop artist"),
    ),
    "software_engineer": F(
        (
            "write code for a payments platform",
            "build data pipelines for a logistics company",
            "review pull requests",
            "fix bugs in a mobile app",
            "design APIs for a cloud service",
            "keep servers running when traffic spikes",
        ),
        ("at a start-up", "at a large tech company", "at a bank's technology division", "at a game studio"),
        ("Python and Git", "a laptop with two monitors", "cloud servers", "unit tests"),
        ("a degree in computer science", "a certificate in web development"),
        ("product managers", "designers", "data scientists"),
        ("shipped a feature used by millions", "cut the build time in half", "led a migration to the cloud"),
        (r"software engineer", r"software develop", r"engineer", r"programmer", r"coder", r"developer"),
    ),
    "surgeon": F(
        (
            "operate on patients with heart disease",
            "perform knee replacements",
            "remove tumours",
            "lead a team in the operating theatre",
            "do rounds after operations",
            "repair broken bones",
        ),
        (
            "in the operating theatre of a teaching hospital",
            "at a trauma centre",
            "at a children's hospital",
            "at a military hospital",
        ),
        ("scalpels and sutures", "laparoscopic instruments", "a robotic arm", "bone saws"),
        ("a medical degree", "a specialist diploma in trauma care", "a fellowship in trauma care"),
        ("anaesthetists", "theatre nurses", "residents"),
        (
            "performed the first robotic operation in the region",
            "separated conjoined twins",
            "trained dozens of residents",
        ),
        (r"surg",),
    ),
    "teacher": F(
        (
            "plan lessons for a class of seven-year-olds",
            "grade homework",
            "run parent evenings",
            "lead a reading group",
            "take pupils on field trips",
            "coach the chess club after school",
        ),
        ("at a primary school", "at a high school", "at a village school", "at an international school"),
        ("a whiteboard and lesson plans", "worksheets", "reading books", "a classroom projector"),
        ("a degree in education", "a certificate in early years education"),
        ("pupils and parents", "the head of the school", "classroom assistants"),
        (
            "was named the district's best in the classroom",
            "started a school garden",
            "took a class to the national science fair",
        ),
        (r"teach", r"schoolteach", r"educator", r"instructor", r"tutor", r"schoolmaster", r"schoolmistress"),
    ),
    "yoga_teacher": F(
        (
            "lead vinyasa classes at dawn",
            "guide students through sun salutations",
            "run meditation workshops",
            "lead retreats by the sea",
            "guide breathing exercises",
            "adjust students' postures on the mat",
        ),
        ("at a studio downtown", "at a retreat centre", "in a park on summer mornings", "at a wellness hotel"),
        ("mats, blocks and straps", "a singing bowl", "bolsters and blankets", "a meditation cushion"),
        ("a two-hundred-hour certification in asana", "a certificate in meditation"),
        ("studio owners", "students", "massage therapists"),
        ("opened a studio", "led a retreat in the mountains", "wrote a book on breathing"),
        (r"yoga", r"yogi", r"teach", r"instructor"),
    ),
}
"""Occupation label -> its facts (all 28 BiasBios occupations)."""
