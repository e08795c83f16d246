import ChunkStore
import Chunking
import DataMover
import Foundation
import Testing

/// A scratch directory removed when the test is done.
final class Scratch {
    let path: String

    init(_ label: String = "test") {
        var base = ProcessInfo.processInfo.environment["SHADOWMOVER_TEST_TMP"] ?? NSTemporaryDirectory()
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        path = "\(base)/shadowmover-\(label)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func sub(_ name: String) -> String { "\(path)/\(name)" }

    deinit { _ = try? FileManager.default.removeItem(atPath: path) }
}

/// Small chunks so that small test files span many chunks.
let smallChunks = ChunkerParameters(minSize: 4096, averageSize: 16384, maxSize: 65536, normalization: 2)

func write(_ path: String, _ bytes: [UInt8]) {
    precondition(FileManager.default.createFile(atPath: path, contents: Data(bytes)), "test fixture: cannot write \(path)")
}

func mkdirs(_ path: String) { try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }

/// Deterministic random bytes (xorshift64; seeds that differ only in their lowest bit give the same
/// stream, so use odd seeds or seeds that differ elsewhere for different data).
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var x = seed | 1
    var out = [UInt8]()
    out.reserveCapacity(count + 8)
    while out.count < count {
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        withUnsafeBytes(of: x) { out.append(contentsOf: $0) }
    }
    return Array(out[..<count])
}

var isRoot: Bool { geteuid() == 0 }

/// Tests that need root (chown, mknod, mounts) skip elsewhere, unless CI asks for them to be failures.
func requireRoot(_ what: String) throws -> Bool {
    if isRoot { return true }
    if ProcessInfo.processInfo.environment["SHADOWMOVER_REQUIRE_PRIVILEGED_TESTS"] == "1" {
        Issue.record("\(what) needs root, and SHADOWMOVER_REQUIRE_PRIVILEGED_TESTS=1 makes a skip a failure")
        return false
    }
    print("skipping \(what): needs root")
    return false
}

/// Runs the built `shadowmover` binary.
struct CLI {
    static var binary: String {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("shadowmover").path,
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("shadowmover").path,
        ] + ["debug", "release"].map {
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent(".build/\($0)/shadowmover").path
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    struct Result {
        var code: Int32
        var stdout: String
        var stderr: String
    }

    /// The password the tests' encrypted stores are made with (`SHADOWMOVER_PASSWORD` in every CLI run
    /// and in this process, so that library opens of CLI-made stores work too).
    static let password = "correct horse battery staple"

    /// The environment a CLI run gets: this process's without SHADOWMOVER_STORE, with the tests'
    /// password and index cache, then `extra`.
    static func environment(_ extra: [String: String]) -> [String: String] {
        setUpProcessEnvironment
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "SHADOWMOVER_STORE")
        for (k, v) in extra { env[k] = v }
        return env
    }

    /// Sets the password and the index cache for library calls in this process, once.
    static let setUpProcessEnvironment: Void = {
        setenv("SHADOWMOVER_PASSWORD", password, 0)
        setenv("XDG_CACHE_HOME", NSTemporaryDirectory() + "/shadowmover-test-cache", 0)
    }()

    /// `init` gets a 1 MiB scrypt unless the test says otherwise: hundreds of CLI runs each open a store,
    /// and the 64 MiB default (tested in EncryptionTests) would cost a quarter of a second each time.
    static func arguments(_ arguments: [String]) -> [String] {
        guard arguments.first == "init", !arguments.contains("--kdf-memory"), !arguments.contains("--no-encryption") else { return arguments }
        return arguments + ["--kdf-memory", "1"]
    }

    @discardableResult
    static func run(_ arguments: [String], prefix: [String] = [], environment: [String: String] = [:]) throws -> Result {
        let p = Process()
        if prefix.isEmpty {
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = arguments
        } else {
            p.executableURL = URL(fileURLWithPath: prefix[0])
            p.arguments = Array(prefix.dropFirst()) + [binary] + arguments
        }
        p.environment = CLI.environment(environment)
        if prefix.isEmpty { p.arguments = CLI.arguments(arguments) } else { p.arguments = Array(prefix.dropFirst()) + [binary] + CLI.arguments(arguments) }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try runUnblocked(p)
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(code: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }
}

/// Every file, directory and link below `root` with the metadata a restore must reproduce.
struct TreeSnapshot: Equatable {
    struct Entry: Equatable, CustomStringConvertible {
        var kind: mode_t
        var mode: mode_t
        var uid: uid_t
        var gid: gid_t
        var size: Int
        var mtimeSec: Int
        var mtimeNsec: Int
        var rdev: UInt
        var content: [UInt8]?
        var link: String?
        var xattrs: [String: [UInt8]]
        var description: String {
            "kind \(String(kind, radix: 8)) mode \(String(mode, radix: 8)) \(uid):\(gid) size \(size) mtime \(mtimeSec).\(mtimeNsec) link \(link ?? "-") xattrs \(xattrs.keys.sorted())"
        }
    }

    var entries: [String: Entry] = [:]
    /// Groups of relative paths that share an inode (hard links).
    var linkGroups: Set<[String]> = []

    init(_ root: String) {
        var inodes: [UInt64: [String]] = [:]
        func visit(_ rel: String) {
            let full = rel.isEmpty ? root : root + "/" + rel
            var st = stat()
            guard lstat(full, &st) == 0 else { return }
            var e = Entry(
                kind: st.st_mode & S_IFMT, mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid,
                size: st.st_mode & S_IFMT == S_IFREG ? Int(st.st_size) : 0,
                mtimeSec: st.st_mtim.tv_sec, mtimeNsec: st.st_mtim.tv_nsec, rdev: UInt(st.st_rdev), content: nil, link: nil, xattrs: [:])
            if st.st_mode & S_IFMT == S_IFREG {
                e.content = Array(FileManager.default.contents(atPath: full) ?? Data())
                if st.st_nlink > 1 { inodes[UInt64(st.st_ino), default: []].append(rel) }
            }
            if st.st_mode & S_IFMT == S_IFLNK { e.link = try? FileManager.default.destinationOfSymbolicLink(atPath: full) }
            e.xattrs = Self.xattrs(full)
            if !rel.isEmpty { entries[rel] = e }
            if st.st_mode & S_IFMT == S_IFDIR {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: full)) ?? [] {
                    visit(rel.isEmpty ? name : rel + "/" + name)
                }
            }
        }
        visit("")
        linkGroups = Set(inodes.values.map { $0.sorted() })
    }

    static func xattrs(_ path: String) -> [String: [UInt8]] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/getfattr")
        p.arguments = ["--absolute-names", "-h", "-d", "-m", "-", "-e", "hex", path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = Pipe()
        guard (try? p.run()) != nil else { return [:] }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        var result: [String: [UInt8]] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let hex = parts[1].dropFirst(2)
            var bytes: [UInt8] = []
            var i = hex.startIndex
            while i < hex.endIndex {
                let j = hex.index(i, offsetBy: 2)
                bytes.append(UInt8(hex[i..<j], radix: 16)!)
                i = j
            }
            result[String(parts[0])] = bytes
        }
        return result
    }
}

func allocatedBytes(_ path: String) -> Int {
    var st = stat()
    stat(path, &st)
    return Int(st.st_blocks) * 512
}

func setTimes(_ path: String, sec: Int, nsec: Int) {
    var times = [timespec(tv_sec: sec, tv_nsec: nsec), timespec(tv_sec: sec, tv_nsec: nsec)]
    utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
}

func setXattr(_ path: String, _ name: String, _ value: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/setfattr")
    p.arguments = ["-h", "-n", name, "-v", value, path]
    try! p.run()
    p.waitUntilExit()
    precondition(p.terminationStatus == 0, "setfattr failed on \(path)")
}

/// Test threads block most signals and children inherit the mask; start helpers with none blocked so
/// SIGTERM stops them.
func runUnblocked(_ p: Process) throws {
    var empty = sigset_t(), saved = sigset_t()
    sigemptyset(&empty)
    pthread_sigmask(SIG_SETMASK, &empty, &saved)
    defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
    try p.run()
}

extension Store {
    /// The directory of a local store (tests that damage stores by hand).
    var path: String { location }

    /// The file of a pack in a local store.
    func packPath(_ id: ChunkID) -> String { backend.localFile(ObjectKey.pack(id))! }
}
