#include <sqlite3.h>
// SQLITE_TRANSIENT is a function-pointer cast macro Swift cannot import.
static inline void *shadowmover_sqlite_transient(void) { return (void *)SQLITE_TRANSIENT; }
