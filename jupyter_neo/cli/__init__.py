"""The ``neo`` command line, whose parser the ``%neo`` magics share."""
