"""The focus scoring service over ZMQ (``autofocus serve``) and its Python clients.

* :mod:`autofocus.service.protocol`: the versioned wire format (JSON header + raw pixels);
* :mod:`autofocus.service.server`: :class:`~autofocus.service.server.FocusServer`;
* :mod:`autofocus.service.client`: ``RemoteScorer``, ``RemoteAutofocusSession``, ``ping``;
* :mod:`autofocus.service.sessions`: server-side step-wise autofocus sessions;
* :mod:`autofocus.service.bench`: ``autofocus bench service``.

Nothing here is imported by ``import autofocus``; pyzmq is imported where it is used.
"""
