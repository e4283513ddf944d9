"""Safe arithmetic expressions over raster bands, compiled to one fused kernel.

A formula such as ``"(N - R) / (N + R + L)"`` is parsed with ``ast.parse(mode="eval")``
into a small expression tree that admits only numbers, symbols, ``+ - * / **``, unary
minus and the functions in :data:`FUNCTIONS`. The text is never passed to ``eval`` or
``exec``.

Several trees are compiled together into one register program: common
sub-expressions are computed once, constant sub-expressions are folded, and
registers are reused as soon as a value is dead. :func:`execute` runs the program
with a numba kernel that walks the input in strips of :data:`STRIP` elements, so
every intermediate lives in a cache-sized row and each input and output is touched
once per block, however many indices are asked for.

Semantics: inputs are read as float32 (``value * scale + offset``, NaN where equal to
``nodata``) and the arithmetic is float32, like the usual numpy scripts (constant
sub-expressions are folded in float64 first); NaN inputs propagate; a division,
power, ``log`` or ``exp`` whose result is infinite (division by zero, ``0 ** -1``,
``log(0)``) gives NaN, and so does any other infinite result on output, so outputs
never hold ``inf``.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["FUNCTIONS", "STRIP", "Program", "compile_program", "execute", "parse", "symbols"]

#: Elements per strip: small enough that all registers of a typical program stay in
#: the L1/L2 caches (each register row is ``STRIP`` float32 values).
STRIP = 2048

#: Functions a formula may call, with their number of arguments.
FUNCTIONS: dict[str, int] = {"sqrt": 1, "abs": 1, "log": 1, "exp": 1, "min": 2, "max": 2}

_MAX_FORMULA_LENGTH = 10_000

# A tree is a tuple: ("num", float), ("sym", str), ("neg", t), (binop, t, t) with binop
# in _BINOPS, or (function, t[, t]) with function in FUNCTIONS.
Tree = tuple
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}

# Opcodes of the register program: rows of (op, dst, a, b).
LOAD, STORE, ADD, SUB, MUL, DIV, POW, NEG, SQUARE, SQRT, ABS, LOG, EXP, MIN, MAX = range(15)
_OPCODES = {
    "add": ADD,
    "sub": SUB,
    "mul": MUL,
    "div": DIV,
    "pow": POW,
    "neg": NEG,
    "square": SQUARE,
    "sqrt": SQRT,
    "abs": ABS,
    "log": LOG,
    "exp": EXP,
    "min": MIN,
    "max": MAX,
}


def parse(formula: str) -> Tree:
    """Parse ``formula`` into an expression tree, rejecting anything but arithmetic.

    Parameters
    ----------
    formula : str
        A Python-like arithmetic expression over symbols, e.g. ``"(N - R) / (N + R)"``.

    Returns
    -------
    tuple
        The expression tree.

    Raises
    ------
    ValueError
        If the text is not a single expression built only from numbers, names,
        ``+ - * / **``, unary ``+``/``-`` and the functions in :data:`FUNCTIONS`.

    Examples
    --------
    >>> parse("2 * N - R")
    ('sub', ('mul', ('num', 2.0), ('sym', 'N')), ('sym', 'R'))
    >>> parse("__import__('os')")
    Traceback (most recent call last):
    ...
    ValueError: unsupported function '__import__' in "__import__('os')"; allowed: ...
    """
    if not isinstance(formula, str):
        raise TypeError(f"a formula must be a str, not {type(formula).__name__}")
    if len(formula) > _MAX_FORMULA_LENGTH:
        raise ValueError(f"formula longer than {_MAX_FORMULA_LENGTH} characters")
    try:
        node = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"cannot parse formula {formula!r}: {err.msg}") from None
    return _convert(node.body, formula)


def _convert(node: ast.AST, formula: str) -> Tree:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ValueError(f"unsupported constant {node.value!r} in {formula!r}")
        return ("num", float(node.value))
    if isinstance(node, ast.Name):
        return ("sym", node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _convert(node.operand, formula)
        return ("neg", operand) if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return (_BINOPS[type(node.op)], _convert(node.left, formula), _convert(node.right, formula))
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        if name not in FUNCTIONS:
            raise ValueError(
                f"unsupported function {name!r} in {formula!r}; allowed: {', '.join(FUNCTIONS)}"
            )
        if node.keywords or len(node.args) != FUNCTIONS[name]:
            raise ValueError(
                f"{name}() takes {FUNCTIONS[name]} positional argument(s) in {formula!r}"
            )
        return (name, *(_convert(arg, formula) for arg in node.args))
    raise ValueError(
        f"unsupported syntax {ast.unparse(node)!r} in {formula!r}: formulas may use numbers, "
        f"names, + - * / **, unary minus and {', '.join(FUNCTIONS)}"
    )


def symbols(tree: Tree) -> set[str]:
    """Return the names a tree refers to.

    Examples
    --------
    >>> sorted(symbols(parse("g * (N - R) / (N + L)")))
    ['L', 'N', 'R', 'g']
    """
    if tree[0] == "sym":
        return {tree[1]}
    if tree[0] == "num":
        return set()
    return set().union(*(symbols(child) for child in tree[1:]))


def substitute(tree: Tree, replacements: Mapping[str, Tree]) -> Tree:
    """Replace symbols by trees (numbers or sub-expressions).

    Examples
    --------
    >>> substitute(parse("L * N"), {"L": ("num", 0.5)})
    ('mul', ('num', 0.5), ('sym', 'N'))
    """
    if tree[0] == "sym":
        return replacements.get(tree[1], tree)
    if tree[0] == "num":
        return tree
    return (tree[0], *(substitute(child, replacements) for child in tree[1:]))


def _fold(op: str, args: Sequence[float]) -> float:
    """Evaluate one operation on Python floats with the kernel's semantics."""
    with np.errstate(all="ignore"):
        x = np.float64(args[0])
        y = np.float64(args[1]) if len(args) > 1 else np.float64(0.0)
        if op == "add":
            r = x + y
        elif op == "sub":
            r = x - y
        elif op == "mul":
            r = x * y
        elif op == "div":
            r = x / y
        elif op == "pow":
            r = x**y
        elif op == "neg":
            r = -x
        elif op == "sqrt":
            r = np.sqrt(x)
        elif op == "abs":
            r = np.abs(x)
        elif op == "log":
            r = np.log(x)
        elif op == "exp":
            r = np.exp(x)
        elif op == "min":
            r = np.minimum(x, y)
        else:  # max
            r = np.maximum(x, y)
    if op in ("div", "pow", "log", "exp") and math.isinf(r):
        r = math.nan
    return float(r)


@dataclass(frozen=True)
class Program:
    """A compiled register program for :func:`execute`.

    Attributes
    ----------
    code : numpy.ndarray
        int32 rows ``(op, dst, a, b)``.
    constants : numpy.ndarray
        Values held in registers ``0 .. len(constants) - 1`` for the whole run.
    n_registers : int
        Number of register rows the program needs.
    inputs : tuple of str
        Input symbols, in the order :func:`execute` expects the arrays.
    n_outputs : int
        Number of output rows.
    """

    code: np.ndarray
    constants: np.ndarray
    n_registers: int
    inputs: tuple[str, ...]
    n_outputs: int


def compile_program(trees: Sequence[Tree], inputs: Iterable[str]) -> Program:
    """Compile ``trees`` (one per output) over the symbols ``inputs`` into a program.

    Every symbol left in the trees must be one of ``inputs``; replace constants by
    numbers first (:func:`substitute`).

    Examples
    --------
    >>> prog = compile_program([parse("(N - R) / (N + R)")], ["N", "R"])
    >>> prog.n_registers, prog.n_outputs
    (4, 1)
    """
    inputs = tuple(inputs)
    position = {name: i for i, name in enumerate(inputs)}
    for tree in trees:
        unknown = symbols(tree) - set(position)
        if unknown:
            raise ValueError(f"symbols without a value: {', '.join(sorted(unknown))}")

    # 1. Linearise with constant folding and common sub-expression elimination.
    #    Each value is ("const", x) | ("load", i) | (op, value ids...).
    values: list[tuple] = []
    memo: dict[tuple, int] = {}

    def value(key: tuple) -> int:
        if key not in memo:
            memo[key] = len(values)
            values.append(key)
        return memo[key]

    def visit(tree: Tree) -> int:
        kind = tree[0]
        if kind == "num":
            return value(("const", float(tree[1])))
        if kind == "sym":
            return value(("load", position[tree[1]]))
        args = [visit(child) for child in tree[1:]]
        if all(values[a][0] == "const" for a in args):
            return value(("const", _fold(kind, [values[a][1] for a in args])))
        if kind == "pow" and values[args[1]] == ("const", 2.0):
            return value(("square", args[0]))
        return value((kind, *args))

    outputs = [visit(tree) for tree in trees]

    # 2. Schedule: constants live in fixed registers; every other value is emitted in
    #    order, and each output is stored right after the value it needs exists.
    const_ids = [i for i, v in enumerate(values) if v[0] == "const"]
    const_reg = {vid: r for r, vid in enumerate(const_ids)}
    order = [i for i, v in enumerate(values) if v[0] != "const"]
    stores_after: dict[int, list[int]] = {}
    for j, vid in enumerate(outputs):
        stores_after.setdefault(vid, []).append(j)
    last_use: dict[int, int] = {}
    step = 0
    for vid in order:
        for arg in values[vid][1:] if values[vid][0] != "load" else ():
            last_use[arg] = step
        step += 1
        for _ in stores_after.get(vid, ()):
            last_use[vid] = step
            step += 1
    for vid in outputs:  # outputs that are constants are stored first
        if vid in const_reg:
            last_use[vid] = -1

    # 3. Register allocation: reuse the rows of dead values, but never a row that is
    #    read by the same instruction (an aliased loop would not be vectorised).
    n_const = len(const_ids)
    reg: dict[int, int] = dict(const_reg)
    free: list[int] = []
    n_registers = n_const
    code: list[tuple[int, int, int, int]] = []
    for j, vid in enumerate(outputs):
        if vid in const_reg:
            code.append((STORE, j, const_reg[vid], 0))
    step = 0
    for vid in order:
        kind, *args = values[vid]
        operands = [reg[a] for a in args] if kind != "load" else []
        if free:
            dst = free.pop()
        else:
            dst = n_registers
            n_registers += 1
        reg[vid] = dst
        if kind != "load":  # free dead operands only now: a destination distinct from
            for a in set(args):  # its operands keeps the loops free of aliasing
                if a not in const_reg and last_use.get(a) == step:
                    free.append(reg[a])
        if kind == "load":
            code.append((LOAD, dst, args[0], 0))
        else:
            a = operands[0]
            b = operands[1] if len(operands) > 1 else 0
            code.append((_OPCODES[kind], dst, a, b))
        step += 1
        for j in stores_after.get(vid, ()):
            code.append((STORE, j, dst, 0))
            step += 1
        stored_last = vid in stores_after and last_use.get(vid) == step - 1
        if vid not in last_use or stored_last:  # dead once stored (or never used)
            free.append(dst)

    return Program(
        code=np.array(code, dtype=np.int32).reshape(-1, 4),
        constants=np.array([values[v][1] for v in const_ids], dtype=np.float64),
        n_registers=max(n_registers, 1),
        inputs=inputs,
        n_outputs=len(trees),
    )


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _load(src, start, m, scale, offset, nodata, row):  # pragma: no cover - compiled
    part = src[start : start + m]  # a local view lets LLVM vectorise the loop
    for i in range(m):
        x = part[i]
        v = np.float32(x) * scale + offset
        row[i] = np.nan if x == nodata else v


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _run(
    inputs, scale, offset, nodata, code, constants, n_registers, outs, n, strip
):  # pragma: no cover
    # Rows one cache line longer than a strip: rows a multiple of 4 KiB apart would
    # share L1 sets and suffer 4K-aliasing stalls between loads and stores.
    regs = np.empty((n_registers, strip + 16), dtype=np.float32)
    for c in range(constants.shape[0]):
        regs[c, :] = constants[c]
    inf = np.float32(np.inf)
    nan = np.float32(np.nan)
    for start in range(0, n, strip):
        m = min(strip, n - start)
        for pc in range(code.shape[0]):
            op = code[pc, 0]
            if op == LOAD:
                k = code[pc, 2]
                _load(inputs[k], start, m, scale[k], offset[k], nodata[k], regs[code[pc, 1]])
                continue
            if op == STORE:
                o = outs[code[pc, 1]][start : start + m]
                a = regs[code[pc, 2]]
                for i in range(m):
                    v = a[i]
                    o[i] = nan if abs(v) == inf else v
                continue
            d = regs[code[pc, 1]]
            a = regs[code[pc, 2]]
            b = regs[code[pc, 3]]
            if op == ADD:
                for i in range(m):
                    d[i] = a[i] + b[i]
            elif op == SUB:
                for i in range(m):
                    d[i] = a[i] - b[i]
            elif op == MUL:
                for i in range(m):
                    d[i] = a[i] * b[i]
            elif op == DIV:
                for i in range(m):
                    v = a[i] / b[i]
                    d[i] = nan if abs(v) == inf else v
            elif op == SQUARE:
                for i in range(m):
                    d[i] = a[i] * a[i]
            elif op == POW:
                for i in range(m):
                    v = a[i] ** b[i]
                    d[i] = nan if abs(v) == inf else v
            elif op == NEG:
                for i in range(m):
                    d[i] = -a[i]
            elif op == SQRT:
                for i in range(m):
                    d[i] = np.sqrt(a[i])
            elif op == ABS:
                for i in range(m):
                    d[i] = abs(a[i])
            elif op == LOG:
                for i in range(m):
                    v = np.log(a[i])
                    d[i] = nan if abs(v) == inf else v
            elif op == EXP:
                for i in range(m):
                    v = np.exp(a[i])
                    d[i] = nan if abs(v) == inf else v
            elif op == MIN:
                for i in range(m):
                    x = a[i]
                    y = b[i]
                    d[i] = nan if (x != x or y != y) else min(x, y)
            elif op == MAX:
                for i in range(m):
                    x = a[i]
                    y = b[i]
                    d[i] = nan if (x != x or y != y) else max(x, y)


#: Inputs and outputs are padded to a multiple of this many arrays: tuples of one length
#: are one numba type, compiled once and loaded from the cache after (a typed List of the
#: outputs would compile numba's list helpers again in every process).
_TUPLE_STEP = 8


def _padded(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`_TUPLE_STEP` (at least one step)."""
    return max(_TUPLE_STEP, -(-n // _TUPLE_STEP) * _TUPLE_STEP)


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def execute(
    program: Program,
    arrays: Sequence[np.ndarray],
    *,
    scale: Sequence[float] | None = None,
    offset: Sequence[float] | None = None,
    nodata: Sequence[float | None] | None = None,
    strip: int = STRIP,
) -> list[np.ndarray]:
    """Run ``program`` on numpy ``arrays`` and return one float32 array per output.

    Parameters
    ----------
    program : Program
        From :func:`compile_program`.
    arrays : sequence of numpy.ndarray
        One per input symbol, in ``program.inputs`` order, broadcastable together;
        any integer or float dtype.
    scale, offset : sequence of float, optional
        Per input: each value is read as ``value * scale + offset`` (defaults 1, 0).
    nodata : sequence of float or None, optional
        Per input: values equal to it are read as NaN.
    strip : int
        Elements per strip.

    Returns
    -------
    list of numpy.ndarray
        float32, of the inputs' broadcast shape, one per output. Each is allocated on
        its own: a block-sized array that the allocator can recycle, where one stack
        of all outputs would be a fresh (page-faulting) mapping for every block.

    Examples
    --------
    >>> prog = compile_program([parse("(N - R) / (N + R)"), parse("N / R")], ["N", "R"])
    >>> execute(prog, [np.array([3.0, 0.0]), np.array([1.0, 0.0])])
    [array([0.5, nan], dtype=float32), array([ 3., nan], dtype=float32)]
    """
    n_in = len(program.inputs)
    if len(arrays) != n_in:
        raise ValueError(f"expected {n_in} arrays, got {len(arrays)}")
    shape = np.broadcast_shapes(*(np.shape(a) for a in arrays)) if arrays else ()
    dtype = np.result_type(*arrays) if arrays else np.dtype(np.float64)
    if dtype.kind == "f" and dtype.itemsize < 4:  # float16: numba has no arithmetic on it
        dtype = np.dtype(np.float32)
    elif dtype.kind not in "iuf" or dtype.itemsize > 8:  # bool, float128, ...
        dtype = np.dtype(np.float64)
    dtype = dtype.newbyteorder("=")  # numba reads native byte order only
    flat = [
        np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=dtype), shape)).reshape(-1)
        for a in arrays
    ]
    width = _padded(n_in)
    flat += [np.empty(0, dtype=dtype)] * (width - n_in)
    flat = [_readonly(a) for a in flat]  # one array type for numba, whatever the source

    def per_input(
        values: Sequence[float | None] | None, default: float, dtype: type = np.float32
    ) -> np.ndarray:
        result = np.full(width, default, dtype=dtype)
        if values is not None:
            result[:n_in] = [default if v is None else v for v in values]
        return result

    size = math.prod(shape)
    outs = [np.empty(shape, dtype=np.float32) for _ in range(program.n_outputs)]
    if size:
        flat_outs = [o.reshape(-1) for o in outs]
        flat_outs += [np.empty(0, dtype=np.float32)] * (_padded(len(outs)) - len(outs))
        _run(
            tuple(flat),
            per_input(scale, 1.0),
            per_input(offset, 0.0),
            per_input(nodata, math.nan, np.float64),
            program.code,
            program.constants.astype(np.float32),
            program.n_registers,
            tuple(flat_outs),
            size,
            strip,
        )
    return outs
