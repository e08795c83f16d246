// PostgreSQL's client library (Debian: libpq5; headers from libpq-dev), for the built-in PostgreSQL
// writer. It is opened on first use rather than linked: libpq pulls in Kerberos, LDAP, GnuTLS and
// OpenSSL (about 5 MiB resident and twenty libraries to relocate at every start), which every
// command but a PostgreSQL backup would carry for nothing.
#pragma once
#include <postgresql/libpq-fe.h>
#include <stddef.h>

/// The libpq functions the writer calls, typed from libpq-fe.h itself.
typedef struct {
    __typeof__(PQconnectdbParams) *_Nonnull connectdbParams;
    __typeof__(PQstatus) *_Nonnull status;
    __typeof__(PQerrorMessage) *_Nonnull errorMessage;
    __typeof__(PQfinish) *_Nonnull finish;
    __typeof__(PQuser) *_Nonnull user;
    __typeof__(PQexecParams) *_Nonnull execParams;
    __typeof__(PQresultStatus) *_Nonnull resultStatus;
    __typeof__(PQresultErrorField) *_Nonnull resultErrorField;
    __typeof__(PQntuples) *_Nonnull ntuples;
    __typeof__(PQnfields) *_Nonnull nfields;
    __typeof__(PQgetvalue) *_Nonnull getvalue;
    __typeof__(PQclear) *_Nonnull clear;
} SMLibPQ;

/// Opens libpq.so.5 once (later calls return the same table). NULL when it cannot be loaded, with
/// dlerror's reason in `error`.
const SMLibPQ *_Nullable sm_libpq(char *_Nonnull error, size_t errorSize);
