"""Looking inside traced graphs: what a step holds and what it reads."""

import tensorflow as tf


def all_graphs(graph):
    """A traced graph and the graphs of the loops and functions it calls."""
    yield graph
    for function in graph._functions.values():
        yield from all_graphs(function.graph)


def whole_table_reads(function, rows, *specs):
    """Shapes of the variable reads in `function` (traced with `specs`, or a
    concrete function as it is) that return a whole table of `rows` rows (a
    `ReadVariableOp`; gathering rows is a `ResourceGather`).  Pick `rows` no
    other dimension has."""
    graph = (function if isinstance(function, tf.types.experimental.ConcreteFunction)
             else tf.function(function).get_concrete_function(*specs)).graph
    return [op.outputs[0].shape.as_list() for g in all_graphs(graph) for op in g.get_operations()
            if op.type == "ReadVariableOp" and op.outputs[0].shape.rank and op.outputs[0].shape[0] == rows]
