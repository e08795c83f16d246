#include "CLibPQ.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static SMLibPQ table;
static const SMLibPQ *loaded;
static char failure[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *library = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        snprintf(failure, sizeof failure, "%s", dlerror());
        return;
    }
#define SYMBOL(field, name)                                                         \
    if (!(*(void **)&table.field = dlsym(library, #name))) {                        \
        snprintf(failure, sizeof failure, "libpq.so.5 has no %s", #name);          \
        return;                                                                     \
    }
    SYMBOL(connectdbParams, PQconnectdbParams)
    SYMBOL(status, PQstatus)
    SYMBOL(errorMessage, PQerrorMessage)
    SYMBOL(finish, PQfinish)
    SYMBOL(user, PQuser)
    SYMBOL(execParams, PQexecParams)
    SYMBOL(resultStatus, PQresultStatus)
    SYMBOL(resultErrorField, PQresultErrorField)
    SYMBOL(ntuples, PQntuples)
    SYMBOL(nfields, PQnfields)
    SYMBOL(getvalue, PQgetvalue)
    SYMBOL(clear, PQclear)
#undef SYMBOL
    loaded = &table;
}

const SMLibPQ *sm_libpq(char *error, size_t errorSize) {
    pthread_once(&once, load);
    if (!loaded && errorSize) snprintf(error, errorSize, "%s", failure);
    return loaded;
}
