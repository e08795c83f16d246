import Foundation

/// Finds the writers for a session: executables in a writers directory (exec writers), qemu-ga style
/// hook scripts in its `fsfreeze-hook.d/`, and those named on the command line or in a job.
public struct WriterDiscovery: Sendable {
    /// Where exec writers are found by default.
    public static let defaultDirectory = "/etc/shadowmover/writers.d"

    /// A directory of exec writers (each executable in it is one).
    public var directory: String?
    /// SQLite databases to protect.
    public var sqliteDatabases: [String] = []
    /// A query the SQLite writers record at freeze.
    public var sqliteProbe: String?
    /// libpq connection strings of PostgreSQL clusters, one built-in writer each.
    public var postgresConnections: [String] = []
    /// Exec writer commands: a program, optionally followed by space-separated arguments.
    public var execWriters: [String] = []
    /// Hook scripts, or directories of them.
    public var fsfreezeHooks: [String] = []

    /// Discovery in `directory` (nil: none) and of nothing else yet.
    public init(directory: String? = WriterDiscovery.defaultDirectory) { self.directory = directory }

    /// The writers: built-in ones named, exec writers given and found, fsfreeze hooks.
    public func writers() throws -> [Writer] {
        var writers: [Writer] = []
        if let directory, FileManager.default.fileExists(atPath: directory) {
            for file in Self.executables(in: directory) { writers.append(ExecWriter(executable: file)) }
            for hook in Self.executables(in: directory + "/fsfreeze-hook.d") { writers.append(FsfreezeHookWriter(script: hook)) }
        }
        for command in execWriters {
            // "PROGRAM ARG…": arguments separated by spaces.
            let words = command.split(separator: " ").map(String.init)
            guard let path = words.first, FileManager.default.isExecutableFile(atPath: path) else {
                throw ShadowCopyError.selection("exec writer \(command) is not an executable file: check the path and its x bit")
            }
            writers.append(ExecWriter(executable: path, arguments: Array(words.dropFirst())))
        }
        for hook in fsfreezeHooks {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: hook, isDirectory: &isDir) else {
                throw ShadowCopyError.selection("fsfreeze hook \(hook) does not exist")
            }
            if isDir.boolValue {
                for file in Self.executables(in: hook) { writers.append(FsfreezeHookWriter(script: file)) }
            } else {
                writers.append(FsfreezeHookWriter(script: hook))
            }
        }
        for db in sqliteDatabases {
            guard FileManager.default.fileExists(atPath: db) else {
                throw ShadowCopyError.selection("SQLite database \(db) does not exist: check --sqlite")
            }
            writers.append(SQLiteWriter(database: db, probe: sqliteProbe))
        }
        for connection in postgresConnections { writers.append(PostgresWriter(connection: connection)) }
        return writers
    }

    /// Executable regular files, sorted, skipping package-manager leftovers as qemu-ga's dispatcher does.
    static func executables(in directory: String) -> [String] {
        let skipped = [".rpmnew", ".rpmorig", ".rpmsave", ".dpkg-old", ".dpkg-new", ".dpkg-dist", ".dpkg-tmp", "~"]
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.sorted().compactMap { name in
            guard !name.hasPrefix("."), !skipped.contains(where: { name.hasSuffix($0) }) else { return nil }
            let full = directory + "/" + name
            var st = stat()
            guard stat(full, &st) == 0, st.st_mode & S_IFMT == S_IFREG, FileManager.default.isExecutableFile(atPath: full) else { return nil }
            return full
        }
    }
}
