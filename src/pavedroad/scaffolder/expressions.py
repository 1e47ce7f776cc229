"""Backstage's ``${{ ... }}`` template expressions, rendered in a Jinja2 sandbox.

Templates write ``${{ parameters.name }}``, ``${{ steps['fetch'].output.x }}``,
``${{ parameters.owner | parseEntityRef }}``; skeleton files write ``${{ values.name }}``.
Only expressions are interpreted: ``{% ... %}`` and ``{# ... #}`` stay literal text, as in
Backstage. Skeletons fetched with ``cookiecutterCompat`` use Jinja's usual ``{{ }}`` and
``{% %}`` syntax instead, with the values under ``cookiecutter``.

Templates are untrusted input. Beyond Jinja's immutable sandbox:

* attributes are looked up in the data only (mappings first, as Backstage's ``.`` does);
  from strings, lists and mappings a short list of methods is allowed (with the
  JavaScript names Backstage authors use: ``toLowerCase``, ``startsWith``, ``length``...);
  anything starting with ``_`` and every other method is refused with :class:`TemplateError`;
* ``*``, ``**``, ``+`` and ``~`` refuse results over the output limit (numbers over
  65 536 bits too), ``%`` does not format strings, ``range`` is capped by the sandbox
  (100 000), and the filters that take a size (``center``, ``indent``, ``replace``,
  ``join``, ``wordwrap``...) are checked before they run;
* only data turns into text: a function, method or generator given to ``string``, ``~``,
  ``join``, ``dump``... is refused, never shown with its Python name and address;
* every token read, attribute lookup, call, operator, filter and loop step checks the time
  limit (so compiling a huge template is bounded too), the output is produced piece by
  piece and stopped at the size limit, and what filters produce along the way counts
  towards a larger limit of its own (a pipeline cannot fill memory item by item).

The task runner adds the last layer: each task runs in its own process with a wall-clock
kill, for whatever a check here misses.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.filters import make_attrgetter
from jinja2.lexer import Token, TokenStream
from jinja2.runtime import LoopContext, Macro, StrictUndefined, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.visitor import NodeTransformer

from pavedroad.catalog.refs import parse_ref
from pavedroad.core.errors import InputError

__all__ = [
    "ExpressionLimits",
    "TemplateError",
    "render_cookiecutter",
    "render_text",
    "render_value",
]

# Delimiters that turn Jinja's statements and comments off: no template contains them.
_NEVER_BLOCK = ("{%pavedroad-never-block%}", "{%pavedroad-never-block-end%}")
_NEVER_COMMENT = ("{#pavedroad-never-comment#}", "{#pavedroad-never-comment-end#}")
_MAX_NUMBER_BITS = 65_536
_NO_TEXT = "cannot be turned into text in templates"
_SINGLE_EXPRESSION = re.compile(r"^\s*\$\{\{(.*)\}\}\s*$", re.DOTALL)


class TemplateError(InputError):
    """A template expression could not be rendered; the detail says which and why."""

    title = "Template error"
    type_slug = "template-error"


@dataclass(frozen=True)
class ExpressionLimits:
    """How long one render may take, how many characters it may produce, and how many its
    filters may produce along the way (values it works with but never writes out)."""

    max_seconds: float = 2.0
    max_output_chars: int = 1_000_000
    max_work_chars: int = 20_000_000


class _Budget:
    """The limits of one render call, checked from every sandbox hook."""

    def __init__(self, limits: ExpressionLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        self.output_chars = 0
        self.work_chars = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateError(
                f"template rendering took longer than {self.limits.max_seconds:g} s"
            )

    def check_size(self, size: int, what: str) -> None:
        if size > self.limits.max_output_chars:
            raise TemplateError(
                f"{what} would be {size} characters or items long; "
                f"the limit is {self.limits.max_output_chars}"
            )

    def add_output(self, chars: int) -> None:
        self.output_chars += chars
        if self.output_chars > self.limits.max_output_chars:
            raise TemplateError(
                f"template output is longer than {self.limits.max_output_chars} characters"
            )

    def add_work(self, value: Any) -> None:
        """Count what a filter produced, whether or not it is written out."""
        self.work_chars += _size(value, self.limits.max_work_chars + 1)
        if self.work_chars > self.limits.max_work_chars:
            raise TemplateError(
                f"the template's filters produced more than {self.limits.max_work_chars} characters"
            )


_budget_var: ContextVar[_Budget | None] = ContextVar("pavedroad_template_budget", default=None)


def _budget() -> _Budget:
    budget = _budget_var.get()
    if budget is None:  # only reached when a template is rendered outside this module's API
        raise TemplateError("templates are rendered through pavedroad.scaffolder.expressions")
    return budget


def _size(value: Any, limit: int) -> int:
    """Roughly how many characters ``value`` renders to, counting no further than ``limit``."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            total += 1
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            total += 1
            stack.extend(item)
        else:
            total += 1
    return total


# --- Filters -------------------------------------------------------------------------------


def parse_repo_url(url: str) -> dict[str, str]:
    """``github.com?owner=o&repo=r`` (a RepoUrlPicker value) as ``{host, owner, repo, ...}``."""
    if not isinstance(url, str) or "?" not in url:
        raise TemplateError(f"parseRepoUrl: {url!r} is not of the form host?owner=o&repo=r")
    host, _, query = url.partition("?")
    if not host:
        raise TemplateError(f"parseRepoUrl: {url!r} names no host")
    params = parse_qs(query, keep_blank_values=False)
    result = {"host": host}
    for key in ("owner", "repo", "organization", "workspace", "project"):
        if params.get(key):
            result[key] = params[key][0]
    if "repo" not in result:
        raise TemplateError(f"parseRepoUrl: {url!r} names no repo")
    return result


def parse_entity_ref(ref: Any, context: Mapping[str, Any] | None = None) -> dict[str, str]:
    """An entity reference as ``{kind, namespace, name}``; ``context`` may give
    ``defaultKind`` and ``defaultNamespace``."""
    context = context or {}
    parsed = parse_ref(
        ref,
        default_kind=context.get("defaultKind"),
        default_namespace=context.get("defaultNamespace") or "default",
    )
    return {"kind": parsed.kind, "namespace": parsed.namespace, "name": parsed.name}


def pick(value: Any, key: str) -> Any:
    """``{...} | pick('name')``: one key of a mapping."""
    if not isinstance(value, Mapping):
        raise TemplateError(f"pick: expected an object, got {type(value).__name__}")
    return value.get(key)


def project_slug(url: str) -> str:
    """``host?owner=o&repo=r`` as ``o/r``."""
    parts = parse_repo_url(url)
    owner = parts.get("owner") or parts.get("workspace") or parts.get("organization")
    return f"{owner}/{parts['repo']}" if owner else parts["repo"]


def _text(value: Any) -> str:
    """``str(value)``, for data only."""
    _check_data(value, _NO_TEXT)
    return str(value)


def _dump(value: Any, indent: int | None = None) -> str:
    _budget().check_size(_size(value, _budget().limits.max_output_chars + 1), "dump")
    return json.dumps(value, indent=indent, default=_text, ensure_ascii=False)


def _concat(items: list[Any]) -> str:
    """What ``a ~ b`` gives (the sandbox does not see Jinja's own ``~``)."""
    texts = [_text(item) for item in items]
    _budget().check_size(sum(map(len, texts)), "concatenation")
    return "".join(texts)


def _checked_join(env: jinja2.Environment) -> Callable[..., Any]:
    join = env.filters["join"]

    def checked(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        items = list(value)
        if attribute is not None:
            items = list(map(make_attrgetter(eval_ctx.environment, attribute), items))
        _check_data(items, _NO_TEXT)
        limit = _budget().limits.max_output_chars + 1
        _budget().check_size(_size(items, limit) + len(d) * len(items), "join")
        return join(eval_ctx, items, d)

    checked.jinja_pass_arg = join.jinja_pass_arg  # type: ignore[attr-defined]
    return checked


def _checked_replace(env: jinja2.Environment) -> Callable[..., Any]:
    replace = env.filters["replace"]

    def checked(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> Any:
        text, old, new = str(s), str(old), str(new)
        hits = text.count(old) if old else len(text) + 1
        if count is not None and count >= 0:
            hits = min(hits, count)
        _budget().check_size(len(text) + hits * max(len(new) - len(old), 0), "replace")
        return replace(eval_ctx, text, old, new, count)

    checked.jinja_pass_arg = replace.jinja_pass_arg  # type: ignore[attr-defined]
    return checked


def _checked_width(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    def checked(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int):
            _budget().check_size(width, name)
        return filter_(value, width, *args, **kwargs)

    return checked


def _checked_indent(filter_: Callable[..., Any]) -> Callable[..., Any]:
    def checked(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> Any:
        if isinstance(width, int):
            _budget().check_size(width, "indent")
        indention = len(width) if isinstance(width, str) else width
        if isinstance(s, str) and isinstance(indention, int):
            lines = len(s.splitlines()) + 1
            _budget().check_size(len(s) + lines * max(indention, 0), "indent")
        return filter_(s, width, first, blank)

    return checked


def _checked_wordwrap(filter_: Callable[..., Any]) -> Callable[..., Any]:
    def checked(environment: Any, s: Any, *args: Any, **kwargs: Any) -> Any:
        wrapstring = kwargs.get("wrapstring", args[2] if len(args) > 2 else None)
        if wrapstring is None:
            wrapstring = environment.newline_sequence
        if isinstance(s, str) and isinstance(wrapstring, str):
            # at most one line break per character of the text
            _budget().check_size(len(s) * (1 + len(wrapstring)), "wordwrap")
        return filter_(environment, s, *args, **kwargs)

    checked.jinja_pass_arg = filter_.jinja_pass_arg  # type: ignore[attr-defined]
    return checked


def _takes_data(filter_: Callable[..., Any]) -> Callable[..., Any]:
    """``filter_``, refusing a value that is not data (it would show as its Python repr)."""
    position = 1 if hasattr(filter_, "jinja_pass_arg") else 0

    def checked(*args: Any, **kwargs: Any) -> Any:
        if len(args) > position:
            _check_data(args[position], _NO_TEXT)
        return filter_(*args, **kwargs)

    if hasattr(filter_, "jinja_pass_arg"):
        checked.jinja_pass_arg = filter_.jinja_pass_arg  # type: ignore[attr-defined]
    return checked


def _checked_filter(filter_: Callable[..., Any]) -> Callable[..., Any]:
    """``filter_`` checking the time limit, its result counted towards the work limit."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        result = filter_(*args, **kwargs)
        budget.add_work(result)
        return result

    if hasattr(filter_, "jinja_pass_arg"):
        checked.jinja_pass_arg = filter_.jinja_pass_arg  # type: ignore[attr-defined]
    return checked


def _guarded_iter(value: Any) -> Iterator[Any]:
    """What ``{% for %}`` iterates over in cookiecutter skeletons: checks the deadline."""
    budget = _budget()
    for item in value:
        budget.tick()
        yield item


# Jinja's built-in filters that take no size argument, and so cannot amplify their input.
_PLAIN_FILTERS = [
    "abs",
    "attr",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "forceescape",
    "groupby",
    "int",
    "items",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "reject",
    "rejectattr",
    "reverse",
    "round",
    "select",
    "selectattr",
    "sort",
    "string",
    "striptags",
    "sum",
    "title",
    "tojson",
    "trim",
    "truncate",
    "unique",
    "upper",
    "urlencode",
    "wordcount",
]
# Filters that turn their value into text: given only data (see _takes_data).
_TEXT_FILTERS = (
    "capitalize",
    "center",
    "e",
    "escape",
    "forceescape",
    "indent",
    "lower",
    "replace",
    "string",
    "striptags",
    "title",
    "trim",
    "truncate",
    "upper",
    "urlencode",
    "wordcount",
    "wordwrap",
)


def _filters(env: jinja2.Environment) -> dict[str, Callable[..., Any]]:
    builtin = env.filters
    filters: dict[str, Callable[..., Any]] = {name: builtin[name] for name in _PLAIN_FILTERS}
    filters["center"] = _checked_width("center", builtin["center"])
    filters["indent"] = _checked_indent(builtin["indent"])
    filters["wordwrap"] = _checked_wordwrap(builtin["wordwrap"])
    filters["join"] = _checked_join(env)
    filters["replace"] = _checked_replace(env)
    filters["dump"] = _dump
    filters["jsonify"] = _dump
    filters["parseRepoUrl"] = parse_repo_url
    filters["parseEntityRef"] = parse_entity_ref
    filters["pick"] = pick
    filters["projectSlug"] = project_slug
    filters["_pavedroad_concat"] = _concat
    filters.update({name: _takes_data(filters[name]) for name in _TEXT_FILTERS})
    filters = {name: _checked_filter(f) for name, f in filters.items()}
    filters["_pavedroad_iter"] = _guarded_iter
    return filters


# --- The sandbox ---------------------------------------------------------------------------

# Methods a template may call, by the name it writes: Python's and JavaScript's.
_STR_METHODS = {
    **{
        name: name
        for name in [
            "lower",
            "upper",
            "strip",
            "lstrip",
            "rstrip",
            "split",
            "rsplit",
            "splitlines",
            "startswith",
            "endswith",
            "capitalize",
            "title",
            "casefold",
            "swapcase",
            "find",
            "rfind",
            "count",
            "removeprefix",
            "removesuffix",
            "partition",
            "rpartition",
            "isdigit",
            "isalpha",
            "isalnum",
            "islower",
            "isupper",
            "isspace",
        ]
    },
    "toLowerCase": "lower",
    "toUpperCase": "upper",
    "trim": "strip",
    "trimStart": "lstrip",
    "trimEnd": "rstrip",
    "startsWith": "startswith",
    "endsWith": "endswith",
    "includes": "__contains__",
    "indexOf": "find",
}
_LIST_METHODS = {"index": "index", "count": "count", "includes": "__contains__"}
_MAPPING_METHODS = {name: name for name in ("keys", "values", "items", "get")}


def _methods_for(obj: Any) -> dict[str, str]:
    if isinstance(obj, str):
        return _STR_METHODS
    if isinstance(obj, (list, tuple)):
        return _LIST_METHODS
    if isinstance(obj, Mapping):
        return _MAPPING_METHODS
    return {}


def _is_allowed_method(obj: Any) -> bool:
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", None)
    return (
        owner is not None
        and type(obj).__name__ in ("builtin_function_or_method", "method-wrapper")
        and name in _methods_for(owner).values()
    )


class _ExpressionUndefined(StrictUndefined):
    """Fails as soon as it is used; :func:`_undefined_message` names the missing path."""


class Unanswered(Undefined):
    """An optional question left unanswered, as Backstage treats it: empty in text, left
    out of a step's input, and ``| default(...)`` applies. Anything more (an attribute of
    it, arithmetic) fails like any undefined value."""


class Answers(dict):  # type: ignore[type-arg]
    """The form's answers (``parameters``, ``secrets``): a key nobody answered is
    :class:`Unanswered` rather than an error."""

    def __missing__(self, key: Any) -> Unanswered:
        return Unanswered(name=str(key))


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(
            undefined=_ExpressionUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=_finalize,
            **options,
        )
        self.filters = _filters(self)
        self.globals = {"range": safe_range}
        self._safe_functions = frozenset(id(f) for f in self.globals.values())

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget().tick()
        if isinstance(obj, Undefined):
            obj._fail_with_undefined_error()
        if attribute.startswith("_"):
            raise SecurityError(
                f"access to attribute {attribute!r} of a {type(obj).__name__} is not allowed"
            )
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        if isinstance(obj, (str, list, tuple)) and attribute == "length":
            return len(obj)
        if isinstance(obj, (str, list, tuple, Mapping)):
            method = _methods_for(obj).get(attribute)
            if method is not None:
                return getattr(obj, method)
            if hasattr(type(obj), attribute):
                raise SecurityError(
                    f"method {attribute!r} of a {type(obj).__name__} is not available in templates"
                )
            if isinstance(obj, Mapping) and hasattr(type(obj), "__missing__"):
                return obj[attribute]  # a mapping that has a value for every key (answers)
            return self.undefined(obj=obj, name=attribute)
        if isinstance(obj, LoopContext):
            return super().getattr(obj, attribute)
        raise SecurityError(f"attributes of a {type(obj).__name__} are not available in templates")

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget().tick()
        if isinstance(obj, Undefined):
            obj._fail_with_undefined_error()
        if isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (KeyError, TypeError):
                return self.undefined(obj=obj, name=argument)
        if isinstance(obj, (str, list, tuple)) and not isinstance(argument, str):
            try:
                return obj[argument]
            except (IndexError, TypeError):
                return self.undefined(obj=obj, name=argument)
        if isinstance(argument, str):
            return self.getattr(obj, argument)
        raise SecurityError(f"items of a {type(obj).__name__} are not available in templates")

    def is_safe_callable(self, obj: Any) -> bool:
        return (
            id(obj) in self._safe_functions
            or _is_allowed_method(obj)
            or isinstance(obj, (Macro, LoopContext))
            or (isinstance(getattr(obj, "__self__", None), LoopContext))
        )

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _budget().tick()
        return super().call(__context, __obj, *args, **kwargs)

    def _tokenize(
        self,
        source: str,
        name: str | None,
        filename: str | None = None,
        state: str | None = None,
    ) -> TokenStream:
        """The template's tokens, the time limit checked as they are read and parsed."""
        stream = super()._tokenize(source, name, filename, state)
        return TokenStream(_ticking(stream), name, filename)

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        """Python code for a template or an expression, with the sandbox's own hooks."""
        return super()._generate(_Guarded().visit(source), name, filename, defer_init)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.tick()
        limit = budget.limits.max_output_chars + 1
        if operator == "%" and isinstance(left, str):
            raise SecurityError("'%' does not format strings in templates; use '~' to join")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                    budget.check_size(_size(seq, limit) * max(times, 0), "repetition")
        if operator == "+" and isinstance(left, (str, list, tuple)):
            budget.check_size(_size(left, limit) + _size(right, limit), "concatenation")
        if isinstance(left, int) and isinstance(right, int):
            _check_number_size(operator, left, right)
        return super().call_binop(context, operator, left, right)


def _check_number_size(operator: str, left: int, right: int) -> None:
    """Refuse ``*`` and ``**`` of whole numbers whose result would pass the bit limit (the
    numbers themselves are not shown: they may be too long to print)."""
    if operator == "*" and left.bit_length() + right.bit_length() > _MAX_NUMBER_BITS:
        raise SecurityError(f"the product is too large a number (over {_MAX_NUMBER_BITS} bits)")
    if (
        operator == "**"
        and abs(left) > 1
        and right > 0
        and left.bit_length() * right > _MAX_NUMBER_BITS
    ):
        raise SecurityError(f"the power is too large a number (over {_MAX_NUMBER_BITS} bits)")


def _ticking(tokens: TokenStream) -> Iterator[Token]:
    budget = _budget_var.get()
    for token in tokens:
        if budget is not None:
            budget.tick()
        yield token


class _Guarded(NodeTransformer):
    """Routes what Jinja does without asking the sandbox through its checks: ``{% for %}``
    loops tick the time limit, ``~`` joins only data within the size limit."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_pavedroad_iter", [], [], None, None)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(items, "_pavedroad_concat", [], [], None, None, lineno=node.lineno)


def _check_data(value: Any, problem: str = "is not a value templates can give") -> None:
    """Refuse anything but JSON-like data as an expression's value (``${{ self }}``...)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Unanswered):
            continue
        if isinstance(item, Undefined):
            item._fail_with_undefined_error()
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif not (item is None or isinstance(item, (str, int, float))):
            raise SecurityError(f"a {type(item).__name__} {problem}")


def _finalize(value: Any) -> Any:
    """How a value shows inside text: as Backstage's JavaScript shows it, dicts as JSON."""
    budget = _budget()
    budget.tick()
    if isinstance(value, Unanswered):
        return ""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        budget.check_size(_size(value, budget.limits.max_output_chars + 1), "output")
        return ",".join(str(_finalize(item)) for item in value)
    if isinstance(value, Mapping):
        return _dump(value)
    raise SecurityError(f"a {type(value).__name__} cannot be written into a template")


_EXPRESSIONS = _Sandbox(
    variable_start_string="${{",
    variable_end_string="}}",
    block_start_string=_NEVER_BLOCK[0],
    block_end_string=_NEVER_BLOCK[1],
    comment_start_string=_NEVER_COMMENT[0],
    comment_end_string=_NEVER_COMMENT[1],
)
_COOKIECUTTER = _Sandbox()


# --- Compiling -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    ast: nodes.Template
    template: jinja2.Template


def _compile(env: _Sandbox, source: str) -> _Compiled:
    """The compiled template; short sources (step inputs, not whole files) are cached."""
    return _compile_cached(env, source) if len(source) <= 4096 else _compile_new(env, source)


@lru_cache(maxsize=1024)
def _compile_cached(env: _Sandbox, source: str) -> _Compiled:
    return _compile_new(env, source)


def _compile_new(env: _Sandbox, source: str) -> _Compiled:
    ast = env.parse(source)
    return _Compiled(ast, env.from_string(ast))


@lru_cache(maxsize=1024)
def _compile_expression(source: str) -> Callable[..., Any]:
    return _EXPRESSIONS.compile_expression(source, undefined_to_none=False)


def _single_expression(text: str) -> str | None:
    """The expression's source when ``text`` is exactly one ``${{ expr }}``."""
    match = _SINGLE_EXPRESSION.match(text)
    if match is None:
        return None
    body = _compile(_EXPRESSIONS, text).ast.body
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    parts = [
        n for n in body[0].nodes if not (isinstance(n, nodes.TemplateData) and not n.data.strip())
    ]
    return match.group(1) if len(parts) == 1 else None


# --- Error messages ------------------------------------------------------------------------


def _path_of(node: nodes.Node) -> list[Any] | None:
    """``parameters.a['b'][0]`` as ``['parameters', 'a', 'b', 0]``; None for anything else."""
    if isinstance(node, nodes.Name):
        return [node.name]
    if isinstance(node, nodes.Getattr):
        base = _path_of(node.node)
        return None if base is None else [*base, node.attr]
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        base = _path_of(node.node)
        return None if base is None else [*base, node.arg.value]
    return None


def _guarded_paths(node: nodes.Node, guarded: bool = False) -> Iterator[tuple[list[Any], bool]]:
    """Every lookup path, and whether ``default`` or ``is defined`` guards it."""
    path = _path_of(node)
    if path is not None and isinstance(node, (nodes.Name, nodes.Getattr, nodes.Getitem)):
        yield path, guarded
    guards = isinstance(node, nodes.Filter) and node.name in ("default", "d")
    guards = guards or (isinstance(node, nodes.Test) and node.name in ("defined", "undefined"))
    for child in node.iter_child_nodes():
        yield from _guarded_paths(
            child, guarded or (guards and child is getattr(node, "node", None))
        )


def _format_path(path: Sequence[Any]) -> str:
    text = str(path[0])
    for key in path[1:]:
        text += f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"
    return text


def _missing_path(ast: nodes.Template, context: Mapping[str, Any]) -> str | None:
    assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for path, guarded in _guarded_paths(ast):
        if guarded or path[0] in assigned or path[0] in ("loop", "range"):
            continue
        value: Any = context
        for depth, key in enumerate(path):
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                return _format_path(path[: depth + 1])
            if isinstance(value, Unanswered):  # used as if it had been answered
                return _format_path(path[: depth + 1])
    return None


def _template_error(
    exc: BaseException, ast: nodes.Template | None, context: Mapping[str, Any]
) -> TemplateError:
    if isinstance(exc, TemplateError):
        return exc
    if isinstance(exc, UndefinedError):
        missing = _missing_path(ast, context) if ast is not None else None
        detail = f"{missing} is not defined" if missing else str(exc)
    elif isinstance(exc, SecurityError):
        detail = f"not allowed: {exc}"
    elif isinstance(exc, jinja2.TemplateSyntaxError):
        detail = f"syntax error on line {exc.lineno}: {exc.message}"
    elif isinstance(exc, RecursionError):
        detail = "the template nests or recurses too deeply"
    elif isinstance(exc, MemoryError):
        detail = "the template needs too much memory"
    elif isinstance(exc, InputError):
        detail = exc.detail
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return TemplateError(detail)


# --- Rendering -----------------------------------------------------------------------------


def _render_string(
    env: _Sandbox, text: str, context: Mapping[str, Any], budget: _Budget, native: bool
) -> Any:
    ast = None
    try:
        expression = _single_expression(text) if native else None
        if expression is not None:
            ast = _compile(env, text).ast
            value = _compile_expression(expression)(**context)
            if isinstance(value, Unanswered):
                return None  # left out of the step's input
            _check_data(value)
            budget.add_output(_size(value, budget.limits.max_output_chars + 1))
            return value
        compiled = _compile(env, text)
        ast = compiled.ast
        chunks = []
        for chunk in compiled.template.generate(**context):
            budget.tick()
            budget.add_output(len(chunk))
            chunks.append(chunk)
        return "".join(chunks)
    except Exception as exc:  # a template may make any filter or method raise anything
        raise _template_error(exc, ast, context) from exc


def _with_budget(limits: ExpressionLimits | None, render: Callable[[_Budget], Any]) -> Any:
    budget = _Budget(limits or ExpressionLimits())
    token = _budget_var.set(budget)
    try:
        return render(budget)
    finally:
        _budget_var.reset(token)


def render_value(
    value: Any, context: Mapping[str, Any], limits: ExpressionLimits | None = None
) -> Any:
    """Render every string in ``value`` (a step input, an output link...), recursing into
    lists and mapping values (not keys). A string that is exactly one ``${{ expr }}`` gives
    the expression's own value (a mapping, list, number...), as in Backstage.

    Raises :class:`TemplateError` naming what went wrong, e.g. ``parameters.nme is not
    defined``, or when the limits are exceeded.
    """

    def walk(item: Any, budget: _Budget) -> Any:
        if isinstance(item, str):
            if "${{" not in item:
                return item
            return _render_string(_EXPRESSIONS, item, context, budget, True)
        if isinstance(item, Mapping):
            return {key: walk(val, budget) for key, val in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(val, budget) for val in item]
        return item

    return _with_budget(limits, lambda budget: walk(value, budget))


def render_text(
    text: str, context: Mapping[str, Any], limits: ExpressionLimits | None = None
) -> str:
    """Render a file's contents: ``${{ ... }}`` expressions only, always a string."""
    if "${{" not in text:
        return text
    return str(
        _with_budget(
            limits, lambda budget: _render_string(_EXPRESSIONS, text, context, budget, False)
        )
    )


def render_cookiecutter(
    text: str, values: Mapping[str, Any], limits: ExpressionLimits | None = None
) -> str:
    """Render a ``cookiecutterCompat`` skeleton file: Jinja's ``{{ cookiecutter.x }}`` and
    ``{% ... %}`` syntax, with ``values`` as ``cookiecutter``."""
    context = {"cookiecutter": values}
    return str(
        _with_budget(
            limits, lambda budget: _render_string(_COOKIECUTTER, text, context, budget, False)
        )
    )
