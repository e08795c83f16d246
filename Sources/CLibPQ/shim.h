// PostgreSQL's client library (Debian: libpq-dev), for the built-in PostgreSQL writer.
#include <libpq-fe.h>
