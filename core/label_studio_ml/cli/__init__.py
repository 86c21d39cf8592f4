"""The ``label-studio-ml`` command: the entry point (``main``), what subcommands share (``console``),
and one module per subcommand: ``start``, ``create`` (``scaffold`` with its ``templates/``), ``deploy``
(with ``kubernetes`` and ``service_facts``), ``preannotate`` and ``worker``."""
