"""The playground: try a draft configuration on requests before it goes live.

- :mod:`.engine` builds an isolated edge from the draft and runs the requests through it;
- :mod:`.origin` is the built-in test origin (answers by path) and the fetch recorder;
- :mod:`.asserts` parses and checks assertions (a tiny parser, never ``eval``);
- :mod:`.doc` is the document: what the page edits, Save stores and Export writes;
- :mod:`.saved` keeps saved playgrounds in the edge's cache directory;
- :mod:`.api` is the admin API and the page; :mod:`.testfile` is ``pkgedge playground test``.
"""
