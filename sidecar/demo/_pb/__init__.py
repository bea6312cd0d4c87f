"""Generated gRPC stubs for ``nps.oracle.OracleService`` (see ``sidecar.demo.regen``)."""
