import Foundation

/// Starts a process with an empty signal mask. A child inherits the mask of the thread that starts it,
/// and the threads of Dispatch and the Swift runtime block most signals: without this, writer programs
/// would start with SIGTERM and SIGINT blocked and could not be stopped the usual way.
func runWithDefaultSignalMask(_ process: Process) throws {
    var empty = sigset_t(), saved = sigset_t()
    sigemptyset(&empty)
    pthread_sigmask(SIG_SETMASK, &empty, &saved)
    defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
    try process.run()
}
