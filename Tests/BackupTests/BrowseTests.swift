import ChunkStore
import DataMover
import Foundation
import Testing

/// A `shadowmover mount` running in the background: started, waited for until its tree appears, and
/// unmounted by SIGTERM (as Ctrl-C would) when the test is done with it.
final class MountedStore {
    let child: Child
    let mountpoint: String
    let log = Subprocess.Collector()

    init(store: String, at mountpoint: String, environment: [String: String] = [:], extra: [String] = []) throws {
        self.mountpoint = mountpoint
        mkdirs(mountpoint)
        child = try startCLI(["mount", "--store", store, mountpoint] + extra, environment: environment, stderr: log)
        let deadline = ContinuousClock.now + .seconds(30)
        while !FileManager.default.fileExists(atPath: mountpoint + "/snapshots") && child.isRunning && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    var isMounted: Bool { ((try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? "").contains(" \(mountpoint) fuse") }

    /// Unmounts with SIGTERM. - Returns: the exit code and what the command logged.
    func stop() -> (code: Int32, log: String) {
        child.terminate()
        child.waitUntilExit(within: .seconds(30))
        return (child.terminationStatus, log.text(by: .now() + 5))
    }

    deinit {
        if child.isRunning {
            child.terminate()
            child.waitUntilExit(within: .seconds(30))
        }
        if isMounted { _ = try? Subprocess.run(["umount", "-l", mountpoint]) }
    }
}

extension Trait where Self == ConditionTrait {
    /// A test that mounts with FUSE: reported as skipped without root or /dev/fuse — except in CI's
    /// strict mode, where it runs and `requireFUSE` fails it.
    static var needsFUSE: Self {
        .enabled(if: (isRoot && access("/dev/fuse", R_OK | W_OK) == 0) || privilegedTestsRequired, "needs root and /dev/fuse")
    }
}

/// Whether FUSE mounts can run here (root and /dev/fuse), or a skip (a failure in CI).
func requireFUSE(_ what: String) throws -> Bool {
    guard try requireRoot(what) else { return false }
    if access("/dev/fuse", R_OK | W_OK) == 0 { return true }
    if privilegedTestsRequired {
        Issue.record("\(what) needs /dev/fuse")
    } else {
        print("skipping \(what): no /dev/fuse")
    }
    return false
}

@Suite("Browse and extract: mount, dump, copy, tag, completions, progress")
struct BrowseTests {
    @Test(
        "mount shows a snapshot with every entry kind as backed up (content, modes, owners, times, xattrs, links, devices) under snapshots/, latest, ids/, hosts/, tags/; SIGTERM unmounts",
        .needsFUSE)
    func mountEveryKind() throws {
        guard try requireFUSE("mount") else { return }
        let s = Scratch("mount")
        let source = s.sub("source")
        makeEveryKindTree(at: source)
        let storePath = s.sub("store")
        #expect(try CLI.run(["init", "--store", storePath]).code == 0)
        let made = try CLI.run(["backup", "--store", storePath, "--tag", "nightly", "--json", source])
        #expect(made.code == 0, "\(made.stderr)")
        let snapshot = try store(storePath).resolveSnapshot("latest").id

        let mount = try MountedStore(store: storePath, at: s.sub("mnt"))
        #expect(mount.isMounted)
        let latest = mount.mountpoint + "/latest" + source
        let before = TreeSnapshot(source), through = TreeSnapshot(latest)
        #expect(before.entries.keys.sorted() == through.entries.keys.sorted())
        for (path, entry) in before.entries {
            #expect(through.entries[path] == entry, "\(path)")
        }
        // Hard links show their link count (the mount gives every path its own inode number).
        var st = stat()
        #expect(lstat(latest + "/big.bin", &st) == 0 && st.st_nlink == 2)
        #expect(lstat(latest + "/sparse.img", &st) == 0 && st.st_size == 8 << 20)
        // The other views lead to the same tree.
        let hostname = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? ""
        let byTime = try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint + "/snapshots")
        #expect(byTime.count == 1)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: mount.mountpoint + "/latest") == "snapshots/" + byTime[0])
        #expect(
            FileManager.default.contents(atPath: mount.mountpoint + "/ids/\(snapshot)" + source + "/small.txt")
                == FileManager.default.contents(atPath: source + "/small.txt"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint + "/tags/nightly") == byTime)
        let hosts = try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint + "/hosts")
        #expect(hosts.count == 1, "\(hosts) (this host: \(hostname))")
        #expect(FileManager.default.fileExists(atPath: mount.mountpoint + "/hosts/\(hosts.first ?? "")/\(byTime[0])" + source + "/big.bin"))
        // Read-only.
        #expect(open(latest + "/small.txt", O_WRONLY) == -1 && errno == EROFS)
        let (code, log) = mount.stop()
        #expect(code == 0, "\(log)")
        #expect(!mount.isMounted)
    }

    @Test(
        "a file whose pack is damaged reads as EIO through the mount and is logged; other files read fine; dump of it leaves an existing target as it was; a bad mountpoint is named",
        .needsFUSE)
    func mountDamage() throws {
        guard try requireFUSE("mount") else { return }
        let s = Scratch("mount-damage")
        let source = s.sub("source")
        mkdirs(source)
        write(source + "/hurt.bin", randomBytes(400_000, seed: 11))
        write(source + "/fine.txt", Array("still readable\n".utf8))
        let storePath = s.sub("store")
        let store = try Store.initialize(at: storePath, parameters: smallChunks)
        _ = try backup(store, [source])
        let record = try store.resolveSnapshot("latest").record
        guard case .entry(let node) = try SnapshotTrees(store: store).lookup(source + "/hurt.bin", root: record.tree) else {
            Issue.record("hurt.bin is not in the snapshot")
            return
        }
        let location = try #require(store.index.lookup(try store.content(of: node)[3]))
        flipByte(store.packPath(location.pack), at: Int(location.entry.offset) + 5)

        let mount = try MountedStore(store: storePath, at: s.sub("mnt"), extra: ["--cache-size", "1"])
        let base = mount.mountpoint + "/latest" + source
        let hurt = try Subprocess.run(["cat", base + "/hurt.bin"])
        #expect(hurt.code != 0 && hurt.stderr.contains("Input/output error"), "\(hurt.stderr)")
        #expect(try Subprocess.run(["cat", base + "/fine.txt"]).stdout == "still readable\n")
        let (code, log) = mount.stop()
        #expect(code == 0)
        #expect(log.contains("damaged: ") && log.contains("hurt.bin") && log.contains(location.entry.id.hex), "\(log)")

        // dump of the damaged file into an existing file: exit 3, and the file is as it was.
        let existing = s.sub("existing")
        write(existing, Array("keep me".utf8))
        let dumped = try CLI.run(["dump", "--store", storePath, "latest", source + "/hurt.bin", "--target", existing])
        #expect(dumped.code == 3 && dumped.stderr.contains("damaged: "), "\(dumped.stderr)")
        #expect(FileManager.default.contents(atPath: existing) == Data("keep me".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path).allSatisfy { !$0.hasPrefix(".tmp-") }, "no temporary file left")

        let missing = try CLI.run(["mount", "--store", storePath, s.sub("nowhere")])
        #expect(missing.code != 0 && missing.stderr.contains("does not exist") && missing.stderr.contains("mkdir -p"), "\(missing.stderr)")
        write(s.sub("mnt") + "/occupied", [1])
        let busy = try CLI.run(["mount", "--store", storePath, s.sub("mnt")])
        #expect(busy.code != 0 && busy.stderr.contains("is not empty"), "\(busy.stderr)")
    }

    @Test(
        "dump writes a file to stdout and a directory as tar (extracted by GNU tar identical in content and metadata) or zip (by unzip); a missing path names the nearest one"
    )
    func dump() throws {
        let s = Scratch("dump")
        let source = s.sub("source")
        makeEveryKindTree(at: source)
        let storePath = s.sub("store")
        #expect(try CLI.run(["init", "--store", storePath]).code == 0)
        #expect(try CLI.run(["backup", "--store", storePath, source]).code == 0)

        let one = try CLI.run(["dump", "--store", storePath, "latest", source + "/small.txt"])
        #expect(one.code == 0 && one.stdout == "hello, shadow copy\n", "\(one.stderr)")

        let tarFile = s.sub("dump.tar")
        let tar = try CLI.run(["dump", "--store", storePath, "latest", source, "--target", tarFile])
        #expect(tar.code == 0, "\(tar.stderr)")
        let out = s.sub("untar")
        mkdirs(out)
        let untar = try Subprocess.run(["tar", "-x", "-p", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-f", tarFile, "-C", out])
        #expect(untar.code == 0, "\(untar.stderr)")
        let before = TreeSnapshot(source), extracted = TreeSnapshot(out + "/source")
        #expect(before.entries.keys.sorted() == extracted.entries.keys.sorted())
        for (path, entry) in before.entries {
            #expect(extracted.entries[path] == entry, "\(path)")
        }
        #expect(before.linkGroups == extracted.linkGroups, "hard links stay links")

        let zipFile = s.sub("dump.zip")
        let zip = try CLI.run(["dump", "--store", storePath, "latest", source + "/dir", "--archive", "zip", "--target", zipFile])
        #expect(zip.code == 0, "\(zip.stderr)")
        if isRoot { #expect(zip.stderr.contains("left out: \(source)/dir/null-device"), "\(zip.stderr)") }
        let unzipped = s.sub("unzip")
        let unzip = try Subprocess.run(["unzip", "-q", zipFile, "-d", unzipped])
        #expect(unzip.code == 0, "\(unzip.stdout) \(unzip.stderr)")
        #expect(contents(unzipped + "/dir") == contents(source + "/dir"))
        #expect(FileManager.default.fileExists(atPath: unzipped + "/dir/nested/deeper/leaf"))

        let missing = try CLI.run(["dump", "--store", storePath, "latest", source + "/dir/nope/file"])
        #expect(missing.code != 0 && missing.stderr.contains("nearest path that is: \(source)/dir"), "\(missing.stderr)")
        let directoryRaw = try CLI.run(["dump", "--store", storePath, "latest", source + "/dir", "--target", s.sub("x")])
        #expect(directoryRaw.code == 0, "a directory without --archive is a tar: \(directoryRaw.stderr)")
    }

    @Test(
        "copy moves snapshots between stores: re-chunked between stores with different keys, blob for blob between stores that name chunks alike; the copies restore identical, check clean, and a second copy skips them"
    )
    func copy() throws {
        let s = Scratch("copy")
        let source = s.sub("source")
        makeEveryKindTree(at: source)
        let a = s.sub("a"), b = s.sub("b")
        for store in [a, b] { #expect(try CLI.run(["init", "--store", store]).code == 0) }
        #expect(try CLI.run(["backup", "--store", a, source]).code == 0)
        write(source + "/later.txt", Array("a second snapshot\n".utf8))
        #expect(try CLI.run(["backup", "--store", a, source]).code == 0)

        let first = try CLI.run(["copy", "--store", b, "--from-store", a, "--json"])
        #expect(first.code == 0, "\(first.stderr)")
        #expect(first.stderr.contains("re-chunked"), "different master keys: different chunk ids")
        let again = try CLI.run(["copy", "--store", b, "--from-store", a])
        #expect(again.code == 0 && again.stdout.components(separatedBy: "already in the destination").count == 3, "\(again.stdout)")
        let target = s.sub("restore-b")
        #expect(try CLI.run(["restore", "--store", b, "latest", "--target", target]).code == 0)
        let before = TreeSnapshot(source), after = TreeSnapshot(target + source)
        #expect(before.entries == after.entries)
        #expect(try CLI.run(["check", "--store", b, "--read-data"]).code == 0)
        #expect(try store(b).snapshots().records.count == 2)

        // Plaintext stores with the reference gear table cut and name chunks alike: blobs are copied.
        let c = s.sub("c"), d = s.sub("d")
        for store in [c, d] { #expect(try CLI.run(["init", "--store", store, "--no-encryption", "--unkeyed"]).code == 0) }
        #expect(try CLI.run(["backup", "--store", c, source]).code == 0)
        let plain = try CLI.run(["copy", "--store", d, "--from-store", c])
        #expect(plain.code == 0 && !plain.stderr.contains("re-chunked"), "\(plain.stderr)")
        #expect(try store(d).snapshotIDs() == store(c).snapshotIDs(), "the same tree ids: the same record")
        let targetD = s.sub("restore-d")
        #expect(try CLI.run(["restore", "--store", d, "latest", "--target", targetD]).code == 0)
        #expect(TreeSnapshot(targetD + source).entries == TreeSnapshot(source).entries)
        // A destination with a password of its own: the source's comes from SHADOWMOVER_FROM_PASSWORD.
        let e = s.sub("e"), password = s.sub("e.password")
        write(password, Array("another password\n".utf8))
        #expect(try CLI.run(["init", "--store", e, "--password-file", password]).code == 0)
        let other = try CLI.run(
            ["copy", "--store", e, "--password-file", password, "--from-store", a], environment: ["SHADOWMOVER_FROM_PASSWORD": CLI.password])
        #expect(other.code == 0, "\(other.stderr)")
        let wrong = try CLI.run(["copy", "--store", e, "--password-file", password, "--from-store", a, "--from-password-file", password])
        #expect(wrong.code != 0, "the destination's password does not open the source")
        let same = try CLI.run(["copy", "--store", c, "--from-store", c])
        #expect(same.code != 0 && same.stderr.contains("the same store"))
    }

    @Test("tag adds, removes and sets tags (a retagged snapshot gets a new id and the old record goes); completions are generated for bash, zsh and fish")
    func tagAndCompletions() throws {
        let s = Scratch("tag")
        let source = s.sub("source")
        mkdirs(source)
        write(source + "/f", [1, 2, 3])
        let storePath = s.sub("store")
        #expect(try CLI.run(["init", "--store", storePath]).code == 0)
        #expect(try CLI.run(["backup", "--store", storePath, "--tag", "daily", source]).code == 0)
        func tags() throws -> [String] { try store(storePath).resolveSnapshot("latest").record.tags }
        let old = try store(storePath).resolveSnapshot("latest").id
        #expect(try CLI.run(["tag", "--store", storePath, "latest", "--add", "keep", "--add", "monthly"]).code == 0)
        #expect(try tags() == ["daily", "keep", "monthly"])
        #expect(try store(storePath).snapshotIDs().count == 1)
        #expect(try store(storePath).snapshotIDs() != [old])
        #expect(try CLI.run(["tag", "--store", storePath, "latest", "--remove", "daily"]).code == 0)
        #expect(try tags() == ["keep", "monthly"])
        #expect(try CLI.run(["tag", "--store", storePath, "latest", "--set", "only"]).code == 0)
        #expect(try tags() == ["only"])
        let unchanged = try CLI.run(["tag", "--store", storePath, "latest", "--add", "only"])
        #expect(unchanged.stdout.contains("unchanged"))
        let bad = try CLI.run(["tag", "--store", storePath, "latest"])
        #expect(bad.code != 0 && bad.stderr.contains("--add, --remove or --set"))

        for shell in ["bash", "zsh", "fish"] {
            let script = try CLI.run(["--generate-completion-script", shell])
            #expect(script.code == 0 && script.stdout.contains("mount") && script.stdout.contains("dump") && script.stdout.contains("store"), "\(shell)")
        }
    }

    @Test("restore, check --read-data and copy report progress as JSON lines on stderr with --json, keeping stdout one JSON report")
    func progress() throws {
        let s = Scratch("progress-all")
        let source = s.sub("source")
        mkdirs(source)
        write(source + "/big", randomBytes(20 << 20, seed: 5))
        let storePath = s.sub("store")
        #expect(try CLI.run(["init", "--store", storePath]).code == 0)
        #expect(try CLI.run(["backup", "--store", storePath, source]).code == 0)
        #expect(try CLI.run(["init", "--store", s.sub("other")]).code == 0)
        for (action, args) in [
            ("restore", ["restore", "--store", storePath, "latest", "--target", s.sub("t")]),
            ("check", ["check", "--store", storePath, "--read-data"]),
            ("copy", ["copy", "--store", s.sub("other"), "--from-store", storePath]),
        ] {
            let r = try CLI.run(args + ["--json", "--progress-interval", "0.001"])
            #expect(r.code == 0, "\(r.stderr)")
            #expect((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) != nil, "stdout is one JSON document")
            let events = r.stderr.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                .filter { $0["type"] as? String == "progress" && $0["action"] as? String == action }
            #expect(!events.isEmpty, "\(action): \(r.stderr.prefix(500))")
            #expect(events.allSatisfy { ($0["bytesTotal"] as? Int ?? 0) >= 20 << 20 }, "\(action)")
        }
        // Quiet when not on a terminal and without --json.
        #expect(try CLI.run(["check", "--store", storePath, "--read-data", "--progress-interval", "0.001"]).stderr.isEmpty)
    }
}

/// Opens a store the CLI made (with the tests' password).
func store(_ path: String) throws -> Store {
    _ = CLI.setUpProcessEnvironment
    return try Store(path: path)
}
