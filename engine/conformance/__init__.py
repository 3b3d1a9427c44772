"""The conformance tools: the fixture runner, the recorder, the scaffold and the demo.

Nothing here is on the call path of :class:`engine.AiClient`; these modules are
tools built *on* the public API (they may import anything in ``engine``):

- ``python -m engine.conformance``: replay every fixture against every manifest
  (:mod:`.runner`, :mod:`.fixture`, :mod:`.server`);
- ``python -m engine.conformance.demo``: one piece of chat code, five providers, offline;
- ``tools/record`` (:mod:`.record`) and ``tools/new-provider`` (:mod:`.scaffold`).

Their data (fixtures, recordings, the demo's answers) ships inside the
package; :func:`.data.data_dir` finds it, installed or in the repository.
"""
