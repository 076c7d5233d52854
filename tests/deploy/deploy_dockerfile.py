"""A small Dockerfile reader: stages, instructions, ARG/ENV expansion, exec forms.

Enough of the Dockerfile reference for our two files: line continuations,
comments and parser directives, `FROM image AS name`, `ARG k[=v]`, `ENV k=v ...`
(and the legacy `ENV k v`), JSON exec forms, HEALTHCHECK options. It also reads
.dockerignore the way Docker does (Go filepath.Match patterns, `**`, `!`
exceptions, the last matching line wins).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_VAR = re.compile(r"\$(?:\{(?P<braced>\w+)(?::(?P<op>[-+])(?P<word>[^}]*))?\}|(?P<bare>\w+))")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV, ...
    args: str  # the rest of the (joined) line
    line: int  # 1-based line of the first physical line


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    global_args: dict[str, str | None]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


def parse_instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        # Comments (and directives) are dropped, also inside a continued instruction.
        if not stripped or stripped.startswith("#"):
            continue
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        line = " ".join(b for b in buf if b)
        buf = []
        keyword, _, args = line.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    if buf:
        raise ValueError("Dockerfile ends inside a continued line")
    return out


def parse(text: str) -> Dockerfile:
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for ins in parse_instructions(text):
        if ins.keyword == "FROM":
            parts = ins.args.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=expand(parts[0], global_args), name=name))
        elif not stages:
            if ins.keyword != "ARG":
                raise ValueError(f"line {ins.line}: only ARG may precede FROM")
            global_args.update(parse_arg(ins.args))
        else:
            stages[-1].instructions.append(ins)
    return Dockerfile(global_args, stages)


def parse_arg(args: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for token in shlex.split(args):
        key, eq, value = token.partition("=")
        out[key] = value if eq else None
    return out


def expand(text: str, env: Mapping[str, str | None]) -> str:
    """Docker's variable substitution: $x, ${x}, ${x:-word}, ${x:+word}."""

    def sub(m: re.Match[str]) -> str:
        key = m.group("braced") or m.group("bare")
        value = env.get(key)
        op = m.group("op")
        if op == "-":
            return value if value else m.group("word")
        if op == "+":
            return m.group("word") if value else ""
        return value or ""

    return _VAR.sub(sub, text)


def parse_env(args: str, env: Mapping[str, str | None]) -> dict[str, str]:
    """The pairs that one ENV instruction sets, expanded against `env` (the state before it)."""
    tokens = shlex.split(args, posix=True)
    if tokens and "=" not in tokens[0]:  # legacy `ENV key value with spaces`
        return {tokens[0]: expand(args.split(None, 1)[1], env)}
    out: dict[str, str] = {}
    for token in tokens:
        key, eq, value = token.partition("=")
        if not eq:
            raise ValueError(f"ENV token without '=': {token!r}")
        out[key] = expand(value, env)
    return out


def exec_form(args: str) -> list[str]:
    """A JSON exec form (CMD, ENTRYPOINT, HEALTHCHECK CMD); the shell form is refused."""
    value = json.loads(args)
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"not an exec form: {args!r}")
    return value


def parse_healthcheck(args: str) -> tuple[dict[str, str], list[str]]:
    """(options, command) of `HEALTHCHECK [--opt=v ...] CMD [...]`."""
    options: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        opt, _, rest = rest.partition(" ")
        key, _, value = opt[2:].partition("=")
        options[key] = value
        rest = rest.lstrip()
    keyword, _, cmd = rest.partition(" ")
    if keyword.upper() != "CMD":
        raise ValueError(f"HEALTHCHECK without CMD: {args!r}")
    return options, exec_form(cmd.strip())


def parse_duration(text: str) -> float:
    """Docker durations such as 30s, 1m30s, 500ms → seconds."""
    units = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"bad duration {text!r}")
    return sum(float(a) * units[b] for a, b in parts)


# ---- .dockerignore ---------------------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated relative paths."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        c = pattern[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += fnmatch.translate(pattern[i : end + 1])[4:-3]
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(f"^{out}$")


@dataclass(frozen=True)
class DockerIgnore:
    rules: tuple[tuple[bool, re.Pattern[str], str], ...]  # (is_exception, regex, pattern)

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        rules = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            pattern = line[1:].strip() if exception else line
            pattern = pattern.strip("/") or "."
            pattern = re.sub(r"/+", "/", pattern).removeprefix("./")
            rules.append((exception, _ignore_regex(pattern), pattern))
        return cls(tuple(rules))

    def excluded(self, rel: str) -> bool:
        """Docker's rule: a path is excluded by the last pattern that matches it or a parent."""
        parts = rel.split("/")
        prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
        result = False
        for exception, regex, _ in self.rules:
            if any(regex.match(p) for p in prefixes):
                result = not exception
        return result

    def may_reinclude_below(self, rel_dir: str) -> bool:
        """Whether an exception could bring back something under an excluded directory."""
        return any(
            exception and (pattern.startswith(rel_dir + "/") or pattern.startswith("*"))
            for exception, _, pattern in self.rules
        )


def copy_context(src: Path, dst: Path, ignore: DockerIgnore) -> list[str]:
    """Copy the build context that Docker would send; returns the copied files."""
    copied: list[str] = []
    for root, dirs, files in os.walk(src):
        base = Path(root).relative_to(src).as_posix()
        base = "" if base == "." else base + "/"
        # Do not walk .git, data dirs or venvs that nothing can re-include.
        dirs[:] = sorted(
            d for d in dirs if not ignore.excluded(base + d) or ignore.may_reinclude_below(base + d)
        )
        for name in sorted(files):
            rel = base + name
            if ignore.excluded(rel):
                continue
            target = dst / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(root) / name, target)
            copied.append(rel)
    return copied
