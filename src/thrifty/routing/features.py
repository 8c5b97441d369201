"""Request features for routing: cheap facts about a request, computed locally in microseconds.

Every dialect's wire object reduces a request to one small neutral view (`RequestView`: the
texts of the messages, tools, structured-output request) and the features are computed from that,
so an OpenAI chat body and an Anthropic messages body give the same features for the same request.

Everything here is a heuristic that must stay cheap: text is scanned only in bounded windows
(the head and tail of the last user message, the head of the system prompt), token counts are
estimated from characters, and keyword tests are a handful of precompiled regexes. The request
type is a best guess meant for rules, not a classifier's verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from thrifty.wire import OPENAI_CHAT, RequestView, Wire

REQUEST_TYPES = ("classification", "extraction", "rewrite", "summarization", "generation",
                 "reasoning", "code", "agentic")

# Characters per token for English-like text under o200k/cl100k: close enough to route on.
_CHARS_PER_TOKEN = 4
_TOKENS_PER_IMAGE = 800
_TOKENS_PER_MESSAGE = 4  # role and separators
# Windows of the last user message that keyword tests look at: instructions sit at either end,
# and scanning all of a long prompt would cost more than the rest of the decision.
_HEAD, _TAIL, _SYSTEM_HEAD = 200, 300, 200
_CHOICES_TAIL = 600  # the options of the final question sit at the end
# Chunk markers are counted in at most this many characters of the context.
_CHUNK_SCAN = 12_000

USER_TIER_HEADER = "x-thrifty-user-tier"


@dataclass(frozen=True, slots=True)
class FeatureSettings:
    """Thresholds that turn counts into flags; from `RoutingConfig.features`."""

    long_context_tokens: int = 8000
    short_rewrite_tokens: int = 600  # a rewrite of more than this is generation, not a short rewrite


@dataclass(slots=True)
class RequestFeatures:
    """What the router knows about one request. Field names are what rules' `when` refers to.

    Read-only by convention: not frozen, because a frozen dataclass's __init__ costs a few
    microseconds more, and this is built for every request.
    """

    input_tokens: int = 0  # estimated: characters / 4, plus tools and images
    turns: int = 0  # user messages
    messages: int = 0  # conversation messages, the system prompt not counted
    tools: bool = False  # tools offered to the model (not counting a single forced tool used as a schema)
    tool_count: int = 0
    tool_results: int = 0  # tool results already in the conversation (an agent loop in progress)
    structured_output: bool = False  # JSON schema / JSON mode / a forced single tool
    code: bool = False  # code in the prompt (fences, source-like lines) or asked for
    choices: int = 0  # lettered options (A) B) C) ...) in the last user message
    retrieved_chunks: int = 0  # documents / retrieved passages in the context
    long_context: bool = False
    images: bool = False
    request_type: str = "generation"
    max_output_tokens: int | None = None
    feature: str | None = None  # declared by the client (x-thrifty-feature)
    call_site: str | None = None  # x-thrifty-call-site
    user: str | None = None
    user_tier: str | None = None  # e.g. free / pro / enterprise
    tenant: str | None = None
    prompt_chars: int = 0  # length of the last user message, for length-based rules and baselines


def features_from_body(body: Mapping[str, Any], wire: Wire, *, headers: Mapping[str, str] | None = None,
                       tenant: str | None = None, user_tier: str | None = None,
                       settings: FeatureSettings = FeatureSettings()) -> RequestFeatures:
    """Features of a request body in `wire`'s dialect."""
    view = wire.request_view(body)
    user = _header(headers, "x-thrifty-user") or wire.user(body)  # type: ignore[arg-type]
    return _features(view, settings, headers, tenant, user, user_tier)


def features_from_prompt(prompt: str, **kw: Any) -> RequestFeatures:
    """Features of a single-turn prompt, as the gateway would see it in a canonical chat body."""
    return features_from_body({"messages": [{"role": "user", "content": prompt}]}, OPENAI_CHAT, **kw)


# --- features from the view -------------------------------------------------------------------

def _features(v: RequestView, s: FeatureSettings, headers: Mapping[str, str] | None, tenant: str | None,
              user: str | None, user_tier: str | None) -> RequestFeatures:
    last = v.user_texts[-1] if v.user_texts else ""
    user_chars = sum(map(len, v.user_texts))
    chars = len(v.system) + user_chars + v.other_chars + v.tool_chars
    tokens = chars // _CHARS_PER_TOKEN + v.images * _TOKENS_PER_IMAGE + v.messages * _TOKENS_PER_MESSAGE
    window = _window(last)
    choices = _count_choices(last[-_CHOICES_TAIL:])
    code = _code_present(window)
    chunks = v.documents + _count_chunks(v.system) + _count_chunks(last)
    tools = v.tool_count > 0 and not v.forced_single_tool
    structured = v.structured or v.forced_single_tool
    text = window.lower()
    if v.system:
        text += "\n" + v.system[:_SYSTEM_HEAD].lower()
    named = _capitalised_name(window)
    rtype = _request_type(text, tools=tools, tool_results=v.tool_results, code=code, choices=choices,
                          tokens=tokens, settings=s, named=named, asked=window.lower())
    return RequestFeatures(
        input_tokens=tokens, turns=len(v.user_texts), messages=v.messages, tools=tools,
        tool_count=v.tool_count, tool_results=v.tool_results, structured_output=structured,
        code=code or rtype == "code", choices=choices, retrieved_chunks=chunks,
        long_context=tokens >= s.long_context_tokens, images=v.images > 0, request_type=rtype,
        max_output_tokens=v.max_output_tokens, feature=_header(headers, "x-thrifty-feature"),
        call_site=_header(headers, "x-thrifty-call-site"), user=user,
        user_tier=user_tier or _header(headers, USER_TIER_HEADER), tenant=tenant, prompt_chars=len(last))


def _window(text: str) -> str:
    if len(text) <= _HEAD + _TAIL:
        return text
    return text[:_HEAD] + "\n" + text[-_TAIL:]


# Lettered options at the start of a line: "A) ...", "(B) ...", "C. ...", "D: ...".
_CHOICE_LINE = re.compile(r"\n[ \t]*\(?([A-J])[).:][ \t]+\S")  # the text gets a leading newline
# Source-like lines (the regex skips straight from newline to newline) and fragments.
_CODE_LINE = re.compile(r"\n[ \t]*(?:def \w|class \w|import \w|from \w+ import|return\b|SELECT |function\b|"
                        r"#include|public |const \w|let \w|for \(|if \()")
_CODE_FRAGMENTS = ("```", ";\n", "=> {", "console.log", "):\n")
# Openings of retrieved passages as RAG templates commonly mark them (case-sensitive, counted);
# each pattern starts with one literal character, which the regex engine skips to quickly.
_CHUNK_TAGS = re.compile(r"<(?:document|doc[ >]|passage|source|context)")
_CHUNK_LINES = re.compile(r"\n(?:Document \d|Passage \d|Source:|\[Document|\[\d+\] )")

# --- request type ----------------------------------------------------------------------------
# The order of evidence, strongest first: tools in play (agentic); code in the prompt or asked for
# (code outranks task words: "rewrite this bash script" and "write an SQL query to select ..." are
# code, and code is never typed a cheap-tier type); the prompt's shape (lettered options, a closed
# label set, few-shot "A: label" lines: classification); a worded task (summarise, extract, ...);
# a worked problem (numbers and a question: reasoning); else generation.

# Code present in the text: shapes that prose does not take, searched case-sensitively in the
# window. Every pattern starts at a literal character, so the regex engine skips straight to it
# (a pattern that starts with `\w` is tried at every position: ten times slower); what must come
# before it (the end of an identifier) is checked on the match, which is rare in prose.
# - after an identifier: a call `foo()`, `print(sorted(`, `max(a, b)`; a method `obj.get(`; a
#   snake_case call `read_file(`; indexing `arr[i]`; a source file name `main.py`;
_AFTER_NAME = re.compile(r"\((?:\)|\w+\(|[^()\n,]{0,40},[^()\n]{0,80}\))|\.[A-Za-z_]\w*\(|_\w*\("
                         r"|\[[A-Za-z_'\"][^\]\n]{0,30}\]"
                         r"|\.(?:py|js|jsx|ts|tsx|css|scss|html|php|rb|rs|java|kt|cs|cpp|hpp|sh|sql|vue|svelte|"
                         r"swift|ipynb|dart|scala|lua|ps1|yml|yaml|toml)\b")
# - anywhere: a shell prompt line, SQL statements, HTML tags, a CSS rule.
_CODE_SHAPES = re.compile(r"\n[ \t]*\$ \w|SELECT\b[^\n]{1,80}\bFROM\b|INSERT INTO|CREATE TABLE|ALTER TABLE|"
                          r"LEFT JOIN|INNER JOIN|GROUP BY"
                          r"|</?(?:div|span|button|html|body|head|script|style|input|form|template|img|ul|li|"
                          r"table|br)\b[^>\n]{0,60}>|\{\s*[\w-]+\s*:[^;{}\n]{1,40};")
# Language and tool names with punctuation in them (the word set loses it), in the lower-cased
# text: plain substring tests, cheaper than a regex whose first characters are common letters.
_CODE_NAMES = ("c++", "c#", "f#", ".net", ".js", "x86", "arm64", "objective-c", "pip install", "pip3 install")
_R_LANGUAGE = re.compile(r" (?:in|using|with) R\b| R (?:code|script|function|package)\b")
# Names that are also English words ("how should I react", "angular momentum", "rust on my
# bike") name the framework or language when capitalised after a lower-case word ("my React
# app"), as prose does not capitalise them there; lower-case, they need a verb as weak nouns do.
_CAPITALISED_NAMES = re.compile(r"(?:React|Angular|Pandas|Rust|Java|Flask|Rails)\b")
# Strong code words: a language, framework or tool name; code by themselves unless a task word
# says the request is about something else ("summarize this article about Python").
_CODE_WORDS = frozenset((
    "python", "javascript", "typescript", "golang", "kotlin", "php", "haskell", "scala", "perl", "clojure",
    "elixir", "erlang", "fortran", "cobol", "matlab", "lua", "powershell", "bash", "zsh", "sudo", "npm", "npx",
    "kubectl", "chmod", "conda", "git", "docker",
    "sql", "mysql", "postgresql", "postgres", "sqlite", "mongodb", "redis", "graphql", "regex", "regexp",
    "css", "scss", "sass", "tailwind", "html", "html5", "jquery", "reactjs", "vue", "vuejs", "nuxt",
    "angularjs", "svelte", "nextjs", "nodejs", "jsx", "tsx", "dataframe", "django", "laravel", "symfony", "wordpress", "woocommerce",
    "tensorflow", "pytorch", "keras", "numpy", "sklearn", "scikit", "matplotlib", "opencv", "cuda",
    "verilog", "vhdl", "dockerfile", "kubernetes", "terraform", "ansible", "nginx", "unity3d", "godot",
    "leetcode", "traceback", "stacktrace", "segfault", "refactor", "refactoring", "compiler", "subprocess",
    "boolean", "struct", "enum", "recursion", "recursive", "linux", "unix", "coding", "json_schema",
))
# Weak code nouns (and ambiguous language names): code only with a verb that makes something
# ("write a function", "fix my code"), never alone ("the function of the liver", "promo code").
_CODE_NOUNS = frozenset((
    "function", "functions", "program", "code", "api", "bug", "algorithm", "query", "snippet",
    "endpoint", "plugin", "library", "module", "app", "website", "webpage", "java", "rust", "ruby", "swift",
    "go", "shell", "flask", "rails", "spring", "assembly", "excel", "formula", "macro", "regular", "react",
    "angular", "pandas", "component",
))  # not "json" / "xml": output asked in a data format is structured output, not code
_CODE_VERBS = frozenset((
    "write", "implement", "create", "build", "fix", "debug", "rewrite", "optimize", "optimise", "refactor",
    "develop", "generate", "convert", "port", "modify", "compile", "deploy",
))
# Request-type cues: single words (looked up in the window's word set) and a few phrases.
_WORDS = {
    "agentic": ("browse", "navigate", "agent", "autonomously"),
    "reasoning": ("solve", "prove", "calculate", "compute", "equation", "derive", "probability", "integral",
                  "theorem", "arithmetic", "math", "mathematical", "algebra", "geometry", "puzzle", "riddle"),
    "summarization": ("summarize", "summarise", "summary", "summarizing", "summarising", "summarization",
                      "summarisation", "tldr", "recap", "condense", "gist"),
    "extraction": ("extract", "parse", "entities"),
    "classification": ("classify", "categorize", "categorise", "categorization", "sentiment", "intent", "label",
                       "spam", "toxic", "moderate"),
    "rewrite": ("rewrite", "rephrase", "paraphrase", "reword", "proofread", "translate", "polish", "grammar",
                "typos", "formal", "informal", "tone", "shorten"),
}
_PHRASES = {
    "reasoning": ("step by step", "step-by-step"),
    "summarization": ("tl;dr", "key points", "key takeaways"),
    "extraction": ("pull out", "list all", "find all", "return json"),
    "classification": ("which of the following", "yes or no", "true or false", "correct answer", "which category",
                       "multiple choice", "choose the", "select the", "on a scale of"),
    "rewrite": ("make it shorter", "make it more"),
}
# "How many / how much" is a worked problem only with numbers to work on ("how much does a
# transfer cost?" is a FAQ); so is any question about two or more quantities.
_QUANTITY_QUESTION = ("how many", "how much", "how long", "how old", "how far", "what is the value", "find the")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NUMBER_WORDS = frozenset(("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                           "fifteen", "twenty", "thirty", "forty", "fifty", "hundred", "thousand", "dozen", "twice",
                           "half"))
_QUESTION = ("?", "how ", "what ", "find ", "determine ", "calculate ", "which ")
# A closed label set in parentheses, "(up, down, neutral, or none)", "(yes/no)"; and few-shot
# answers of one or two words, "A: down".
_LABEL_SET = re.compile(r"\((?:[a-z][\w-]*(?:, or |, | or |/)){1,8}[a-z][\w-]*\)")
_SHORT_ANSWER = re.compile(r"\n(?:a|answer|label|output|sentiment|category|class):[ \t]*[\w-]+(?:[ \t][\w-]+)?"
                           r"[ \t]*(?=\n)")
_TYPE_OF = {word: kind for kind, words in _WORDS.items() for word in words}
# A task word that says a request naming a language is about something else ("summarize this
# article about Python").
_TASKS_OVER_A_NAME = ("summarization", "rewrite", "extraction", "classification")
_KEYWORDS = frozenset(_TYPE_OF)
_PUNCTUATION = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^`{|}~\n\t\r"})


def _code_present(window: str) -> bool:
    """Code in the text itself: fences, source-like lines, or shapes only code takes."""
    if any(m in window for m in _CODE_FRAGMENTS) or ("\n" in window and _CODE_LINE.search(window) is not None):
        return True
    for m in _AFTER_NAME.finditer(window):
        # a call needs a name of two or more characters (`f(x, y)` is maths), the rest one
        start = m.start()
        need = 2 if window[start] == "(" else 1
        if start >= need and window[start - need:start].replace("_", "a").isalnum():
            return True
    if _CODE_SHAPES.search("\n" + window) is not None:
        return True
    return " R" in window and _R_LANGUAGE.search(" " + window) is not None


def _capitalised_name(window: str) -> bool:
    for m in _CAPITALISED_NAMES.finditer(window):
        before = window[max(m.start() - 2, 0):m.start()]
        if len(before) == 2 and before[1] == " " and (before[0].islower() or before[0] == ","):
            return True
    return False


def _request_type(text: str, *, tools: bool, tool_results: int, code: bool, choices: int, tokens: int,
                  settings: FeatureSettings, named: bool = False, asked: str | None = None) -> str:
    """The request's type from the lower-cased window; `code` is code present in the text, `named`
    a language or framework named in a way only the lower-cased text cannot tell. `asked` is the
    user's own text (no system prompt): a question is a worked problem by the quantities it asks
    about, not by the numbers of the instructions around it ("answer in three sentences")."""
    words = set(text.translate(_PUNCTUATION).split())
    kinds = {_TYPE_OF[w] for w in _KEYWORDS.intersection(words)}

    def cue(kind: str) -> bool:  # phrases are looked for only when the kind is asked about
        return kind in kinds or any(phrase in text for phrase in _PHRASES.get(kind, ()))

    if tools and (tool_results or cue("agentic")):
        return "agentic"
    if code:
        return "code"
    named = named or not _CODE_WORDS.isdisjoint(words) or any(n in text for n in _CODE_NAMES)
    if (named or not _CODE_NOUNS.isdisjoint(words)) and not _CODE_VERBS.isdisjoint(words):
        return "code"  # code asked for: "write a function", "fix my React hook"
    if tools:
        return "agentic"
    if choices >= 2:
        # An options list asks to pick one: classification, unless it is a worked problem.
        return "reasoning" if cue("reasoning") and not cue("classification") else "classification"
    if named and not any(cue(kind) for kind in _TASKS_OVER_A_NAME):
        return "code"  # a question about a language or tool ("why is my React state stale?")
    for kind in ("reasoning", "summarization", "extraction"):
        if cue(kind):
            return kind
    if cue("classification") or _LABEL_SET.search(text) or len(_SHORT_ANSWER.findall(text)) >= 2:
        return "classification"
    if cue("rewrite"):
        return "rewrite" if tokens <= settings.short_rewrite_tokens else "generation"
    question = text if asked is None else asked
    if any(q in question for q in _QUESTION):
        asked_words = words if asked is None else set(asked.translate(_PUNCTUATION).split())
        numbers = len(_NUMBER.findall(question)) + len(_NUMBER_WORDS.intersection(asked_words))
        if numbers >= 2 or (numbers and any(q in question for q in _QUANTITY_QUESTION)):
            return "reasoning"
    return "generation"


def _count_choices(text: str) -> int:
    """Option letters in the last block of lettered lines (A, B, C... in order)."""
    if "\n" not in text:
        return 0
    letters = _CHOICE_LINE.findall("\n" + text)
    if len(letters) < 2:
        return 0
    # Few-shot prompts repeat the options of earlier examples; count the final run from "A".
    run = 0
    for letter in reversed(letters):
        run += 1
        if letter == "A":
            break
    return run if run >= 2 else 0


def _count_chunks(text: str) -> int:
    if not text:
        return 0
    head = text[:_CHUNK_SCAN]
    found = len(_CHUNK_TAGS.findall(head)) if "<" in head else 0
    return found + len(_CHUNK_LINES.findall(head))


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    return value if value else None
