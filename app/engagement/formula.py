"""Earning-rule formulas: arithmetic over an action's numeric properties, checked once
when the rule is written and evaluated per action without `eval`.

The grammar is Python's expression syntax cut down to what a points formula needs:
numbers, property names, `+ - * / ( )`, unary minus and plus, and calls of `min`, `max`,
`floor`, `round`. Anything else (`**`, attribute access, subscripts, comparisons,
strings, lambdas, keyword arguments, other calls) is refused with a message naming it.
The parsed tree is compiled to nested closures, so evaluation walks no AST.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, DivisionByZero, InvalidOperation

FORMULA_MAX_CHARS = 500
# Deeper trees are refused: evaluation recurses once per level.
FORMULA_MAX_DEPTH = 32
FUNCTIONS = ("min", "max", "floor", "round")

Value = Decimal
Properties = Mapping[str, object]
Evaluate = Callable[[Properties], Value]


class FormulaError(ValueError):
    """Why a formula cannot be used; the message is shown to the client."""


class MissingProperty(LookupError):
    """The action lacks a numeric property the formula reads: the rule does not apply."""


@dataclass(frozen=True)
class Formula:
    text: str
    names: frozenset[str]  # the properties it reads
    _evaluate: Evaluate

    def points(self, properties: Properties) -> int:
        """Whole points for an action's properties: floored, and never below zero.
        Raises MissingProperty when a property it reads is absent or not a number; a
        division by zero is worth nothing."""
        try:
            value = self._evaluate(properties)
        except (DivisionByZero, InvalidOperation, ZeroDivisionError):
            return 0
        if not value.is_finite() or value <= 0:
            return 0
        return int(value)  # positive: int() floors


_BINARY: dict[type[ast.operator], Callable[[Value, Value], Value]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_OPERATOR_NAMES = {
    ast.Pow: "**",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.MatMult: "@",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
}


def compile_formula(text: str) -> Formula:
    """The formula `text` compiled, or FormulaError saying what is not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("formula must be a non-empty expression")
    if len(text) > FORMULA_MAX_CHARS:
        raise FormulaError(f"formula must be at most {FORMULA_MAX_CHARS} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as problem:
        raise FormulaError(f"formula is not a valid expression: {problem.msg}") from None
    names: set[str] = set()
    evaluate = _compile(tree.body, names, 1)
    return Formula(text, frozenset(names), evaluate)


def _number(value: object) -> Value:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise MissingProperty
    number = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
    if not number.is_finite():
        raise MissingProperty
    return number


def _compile(node: ast.expr, names: set[str], depth: int) -> Evaluate:
    if depth > FORMULA_MAX_DEPTH:
        raise FormulaError(f"formula nests deeper than {FORMULA_MAX_DEPTH} levels")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise FormulaError(f"formula may hold numbers only, not {node.value!r}")
        constant = (
            Decimal(repr(node.value)) if isinstance(node.value, float) else Decimal(node.value)
        )
        return lambda properties: constant
    if isinstance(node, ast.Name):
        name = node.id
        if name in FUNCTIONS:
            raise FormulaError(f"{name} must be called: {name}(...)")
        names.add(name)

        def read(properties: Properties) -> Value:
            if name not in properties:
                raise MissingProperty
            return _number(properties[name])

        return read
    if isinstance(node, ast.BinOp):
        operation = _BINARY.get(type(node.op))
        if operation is None:
            shown = _OPERATOR_NAMES.get(type(node.op), type(node.op).__name__)
            raise FormulaError(f"operator {shown} is not allowed (only + - * /)")
        left = _compile(node.left, names, depth + 1)
        right = _compile(node.right, names, depth + 1)
        return lambda properties: operation(left(properties), right(properties))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _compile(node.operand, names, depth + 1)
        if isinstance(node.op, ast.USub):
            return lambda properties: -operand(properties)
        return operand
    if isinstance(node, ast.Call):
        return _compile_call(node, names, depth)
    raise FormulaError(f"formula may not contain {_describe(node)}")


def _compile_call(node: ast.Call, names: set[str], depth: int) -> Evaluate:
    function = node.func.id if isinstance(node.func, ast.Name) else None
    if function not in FUNCTIONS:
        raise FormulaError(f"only {', '.join(FUNCTIONS)} may be called")
    if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
        raise FormulaError(f"{function}() takes plain arguments only")
    args = [_compile(arg, names, depth + 1) for arg in node.args]
    if function in ("min", "max"):
        if len(args) < 2:
            raise FormulaError(f"{function}() needs at least two arguments")
        pick = min if function == "min" else max
        return lambda properties: pick(arg(properties) for arg in args)
    if len(args) != 1:
        raise FormulaError(f"{function}() takes one argument")
    [arg] = args
    if function == "floor":
        return lambda properties: Decimal(math.floor(arg(properties)))
    # round: half to even, as Python's round.
    return lambda properties: Decimal(round(arg(properties)))


def _describe(node: ast.expr) -> str:
    return {
        ast.Attribute: "attribute access",
        ast.Subscript: "subscripts",
        ast.Compare: "comparisons",
        ast.BoolOp: "and/or",
        ast.Lambda: "lambdas",
        ast.IfExp: "conditional expressions",
        ast.JoinedStr: "strings",
        ast.List: "lists",
        ast.Tuple: "tuples",
        ast.Dict: "dicts",
        ast.Set: "sets",
    }.get(type(node), type(node).__name__)
