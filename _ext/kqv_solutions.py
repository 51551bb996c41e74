"""Make sphinx-exercise's instructor switch, ``hide_solutions: true``, also leave out *gated* solutions.

The appendix's worked answers are gated solutions: a ``{solution-start}`` directive in the markdown cell that
opens an exercise's section, a ``{solution-end}`` before the next section, and the section's prose, code
cells and outputs in between, all folded into one dropdown. sphinx-exercise 1.2 drops a plain ``{solution}``
block when ``hide_solutions`` is set, but of a gated one it drops only the start, so the answer would show
unfolded (and the orphaned end marker has no HTML writer). Here ``{solution-start}`` leaves a marker instead,
and everything from the marker to its ``{solution-end}`` is removed before sphinx-exercise merges the rest.
"""
from docutils import nodes
from sphinx.transforms import SphinxTransform
from sphinx_exercise.directive import SolutionStartDirective
from sphinx_exercise.nodes import solution_end_node


class hidden_solution(nodes.Element):
    """Where a gated solution started, in an edition without solutions."""


class SolutionStart(SolutionStartDirective):
    def run(self):
        shown = super().run()  # also records the start, so sphinx-exercise's structure check still passes
        return [hidden_solution()] if self.env.app.config.hide_solutions else shown


class RemoveHiddenSolutions(SphinxTransform):
    default_priority = 5  # after sphinx-exercise checks the gated structure (1), before it merges (10)

    def apply(self):
        for start in list(self.document.findall(hidden_solution)):
            parent = start.parent
            i = parent.index(start)
            end = next((k for k in range(i + 1, len(parent)) if isinstance(parent[k], solution_end_node)),
                       None)
            if end is None:
                raise ValueError(f"{self.env.docname}: a {{solution-start}} without a {{solution-end}} after it "
                                 "in the same section")
            del parent[i:end + 1]


def setup(app):
    app.setup_extension("sphinx_exercise")
    app.add_directive("solution-start", SolutionStart, override=True)
    app.add_node(hidden_solution)
    app.add_transform(RemoveHiddenSolutions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
