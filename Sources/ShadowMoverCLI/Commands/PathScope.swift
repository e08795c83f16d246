/// The part of a snapshot a command looks at (`ls … PATH`, `find --path PATH`): that path and
/// everything below it; everything when no path (or `/`) is given.
struct PathScope {
    private let prefix: String?

    init(_ path: String?) {
        var p = path ?? "/"
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        prefix = p == "/" ? nil : p
    }

    /// True for the scope's path and what lies below it.
    func contains(_ full: String) -> Bool {
        prefix.map { full == $0 || full.hasPrefix($0 + "/") } ?? true
    }

    /// True where descending into directory `full` can reach the scope: it is inside, or above it.
    func leadsInto(_ full: String) -> Bool {
        contains(full) || (prefix.map { $0.hasPrefix(full + "/") } ?? true)
    }
}
