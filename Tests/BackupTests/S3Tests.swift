import ChunkStore
import Foundation
import ObjectStorage
import Testing

/// The Ceph cluster the S3 tests share: the one `.ci/run` started (it exports SHADOWMOVER_S3_ENDPOINT,
/// the AWS keys and SHADOWMOVER_S3_CEPH_DIR), or, where Ceph is installed and we are root, one this
/// test process starts with tools/ceph-s3.sh and stops when it exits.
struct CephS3 {
    let endpoint: String
    let accessKey: String
    let secretKey: String
    let directory: String

    static let shared: CephS3? = {
        let env = ProcessInfo.processInfo.environment
        if let endpoint = env["SHADOWMOVER_S3_ENDPOINT"], let key = env["AWS_ACCESS_KEY_ID"], let secret = env["AWS_SECRET_ACCESS_KEY"],
            let dir = env["SHADOWMOVER_S3_CEPH_DIR"]
        {
            return CephS3(endpoint: endpoint, accessKey: key, secretKey: secret, directory: dir)
        }
        guard isRoot, FileManager.default.isExecutableFile(atPath: "/usr/bin/ceph-mon") else { return nil }
        let dir = "/tmp/shadowmover-test-ceph-\(getpid())"
        guard runScript("start \(dir) 7580 >\(dir).env"), let text = try? String(contentsOfFile: dir + ".env", encoding: .utf8) else { return nil }
        atexit { _ = runScript("stop /tmp/shadowmover-test-ceph-\(getpid())") }
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 2 { values[kv[0]] = kv[1] }
        }
        guard let endpoint = values["SHADOWMOVER_S3_ENDPOINT"], let key = values["AWS_ACCESS_KEY_ID"], let secret = values["AWS_SECRET_ACCESS_KEY"] else {
            return nil
        }
        // The tests open stores in this process too (as .ci/run's exported keys let them there).
        setenv("AWS_ACCESS_KEY_ID", key, 1)
        setenv("AWS_SECRET_ACCESS_KEY", secret, 1)
        return CephS3(endpoint: endpoint, accessKey: key, secretKey: secret, directory: dir)
    }()

    /// Whether a cluster is given (CI) or can be started here (root, Ceph installed), without starting it.
    static var available: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["SHADOWMOVER_S3_ENDPOINT"] != nil || (isRoot && FileManager.default.isExecutableFile(atPath: "/usr/bin/ceph-mon"))
    }

    /// The cluster, or nil after a skip message (a failure where CI requires every test to run).
    static func require() -> CephS3? {
        if let shared { return shared }
        if ProcessInfo.processInfo.environment["SHADOWMOVER_REQUIRE_PRIVILEGED_TESTS"] == "1" {
            Issue.record("the S3 tests need a Ceph cluster: .ci/run starts one with tools/ceph-s3.sh (packages ceph-mon ceph-mgr ceph-osd radosgw)")
        } else {
            print("skipping S3 tests: no Ceph cluster (install ceph-mon ceph-mgr ceph-osd radosgw, run as root, or set SHADOWMOVER_S3_ENDPOINT)")
        }
        return nil
    }

    var credentials: S3Credentials { S3Credentials(accessKey: accessKey, secretKey: secretKey) }

    /// A store location in a bucket of its own.
    func newStore(_ label: String) -> String { "s3:\(endpoint)/t-\(label)-\(UUID().uuidString.prefix(8).lowercased())/store" }

    /// The environment the CLI needs: keys, a cache of its own, retries shortened for fault tests.
    func environment(cache: String, retries: Int = 8) -> [String: String] {
        ["AWS_ACCESS_KEY_ID": accessKey, "AWS_SECRET_ACCESS_KEY": secretKey, "XDG_CACHE_HOME": cache, "SHADOWMOVER_S3_RETRIES": "\(retries)"]
    }

    func stopGateway() { #expect(Self.runScript("stop-rgw \(directory)")) }
    func startGateway() { #expect(Self.runScript("start-rgw \(directory)")) }

    /// Runs tools/ceph-s3.sh with `arguments` (a shell word list) through system(3): the script starts
    /// daemons, and Foundation's Process has been seen never to notice such a script's exit.
    static func runScript(_ arguments: String) -> Bool {
        system("'\(Shell.tool("ceph-s3.sh"))' \(arguments) 2>>/tmp/shadowmover-ceph-s3.err") == 0
    }

    /// Starts the CLI in the background with this cluster's environment.
    func start(_ arguments: [String], cache: String) throws -> Child {
        try startCLI(arguments, environment: environment(cache: cache))
    }
}

extension Trait where Self == ConditionTrait {
    /// A test on the Ceph cluster: reported as skipped where there is none — except in CI's strict
    /// mode, where it runs and `CephS3.require` fails it.
    static var needsCeph: Self {
        .enabled(
            if: CephS3.available || privilegedTestsRequired,
            "needs a Ceph cluster (SHADOWMOVER_S3_ENDPOINT, or root with ceph-mon, ceph-mgr, ceph-osd and radosgw installed)")
    }
}

/// The S3 store on a real Ceph RGW. Serialized: some tests stop and start the gateway.
@Suite("S3 stores on Ceph", .serialized, .needsCeph)
struct S3Tests {
    let scratch = Scratch("s3")

    func cli(_ ceph: CephS3, _ args: [String], retries: Int = 8) throws -> CLI.Result {
        try CLI.run(args, environment: ceph.environment(cache: scratch.sub("cache"), retries: retries))
    }

    @Test("a tree with every entry kind round-trips through S3; check --read-data, ls, stats and repair index work there")
    func roundTrip() throws {
        guard let ceph = CephS3.require() else { return }
        let store = ceph.newStore("roundtrip")
        let source = scratch.sub("source")
        makeEveryKindTree(at: source)
        #expect(try cli(ceph, ["init", "--store", store, "--min", "4096", "--avg", "16384", "--max", "65536"]).code == 0)
        let b = try cli(ceph, ["backup", "--store", store, source])
        #expect(b.code == 0, "\(b.stderr)")
        let target = scratch.sub("restore")
        let r = try cli(ceph, ["restore", "latest", "--store", store, "--target", target])
        #expect(r.code == 0, "\(r.stderr)")
        let before = TreeSnapshot(source), after = TreeSnapshot(target + source)
        #expect(before.entries.keys.sorted() == after.entries.keys.sorted())
        for (path, entry) in before.entries { #expect(after.entries[path] == entry, "\(path)") }
        #expect(before.linkGroups == after.linkGroups)
        #expect(try cli(ceph, ["check", "--read-data", "--store", store]).code == 0)
        #expect(try cli(ceph, ["ls", "latest", "--store", store]).stdout.contains("sparse.img"))
        for inspect in [
            ["stats"], ["snapshot", "latest"], ["report", "--html", scratch.sub("report.html")],
            ["pack", try #require(try StoreLocation.open(store, cacheDirectory: scratch.sub("cache")).packIDs().first).hex],
        ] {
            let r = try cli(ceph, ["inspect"] + inspect + ["--store", store])
            #expect(r.code == 0, "inspect \(inspect[0]): \(r.stderr)")
        }
        // Listing follows continuation tokens: pages of two keys give the same packs as one page.
        let bucket = String(store.split(separator: "/")[2])
        let paged = S3Client(endpoint: URL(string: ceph.endpoint)!, bucket: bucket, credentials: ceph.credentials, listPageSize: 2)
        let whole = S3Client(endpoint: URL(string: ceph.endpoint)!, bucket: bucket, credentials: ceph.credentials)
        let all = try whole.list("store/")
        #expect(all.count > 4)
        #expect(try paged.list("store/").sorted() == all.sorted())
        // The index cache is disposable: without it, the store opens the same.
        try FileManager.default.removeItem(atPath: scratch.sub("cache"))
        #expect(try cli(ceph, ["repair", "index", "--store", store]).code == 0)
        #expect(try cli(ceph, ["check", "--read-data", "--store", store]).code == 0)
        // A second backup of the same tree uploads nothing new.
        let again = try cli(ceph, ["backup", "--store", store, source, "--json"])
        #expect(again.code == 0)
        #expect(again.stdout.contains("\"chunksNew\":0"), "\(again.stdout.suffix(600))")
    }

    @Test("copy local → S3 → local keeps every entry; the S3 store mounts (FUSE) and dumps like a local one", .needsRoot)
    func copyAndBrowse() throws {
        guard let ceph = CephS3.require() else { return }
        let remote = ceph.newStore("copy")
        let local = scratch.sub("copy-local"), back = scratch.sub("copy-back")
        let source = scratch.sub("copy-source")
        makeEveryKindTree(at: source)
        for store in [remote, local, back] { #expect(try cli(ceph, ["init", "--store", store]).code == 0) }
        #expect(try cli(ceph, ["backup", "--store", local, source]).code == 0)
        let up = try cli(ceph, ["copy", "--store", remote, "--from-store", local])
        #expect(up.code == 0, "\(up.stderr)")
        let down = try cli(ceph, ["copy", "--store", back, "--from-store", remote])
        #expect(down.code == 0, "\(down.stderr)")
        let target = scratch.sub("copy-restore")
        #expect(try cli(ceph, ["restore", "latest", "--store", back, "--target", target]).code == 0)
        #expect(TreeSnapshot(target + source).entries == TreeSnapshot(source).entries)
        #expect(try cli(ceph, ["check", "--read-data", "--store", remote]).code == 0)

        let dumped = try cli(ceph, ["dump", "--store", remote, "latest", source + "/small.txt"])
        #expect(dumped.stdout == "hello, shadow copy\n", "\(dumped.stderr)")
        guard try requireFUSE("mount of an S3 store") else { return }
        let mount = try MountedStore(store: remote, at: scratch.sub("copy-mnt"), environment: ceph.environment(cache: scratch.sub("cache")))
        #expect(
            FileManager.default.contents(atPath: mount.mountpoint + "/latest" + source + "/big.bin")
                == FileManager.default.contents(atPath: source + "/big.bin"))
        #expect(TreeSnapshot(mount.mountpoint + "/latest" + source).entries == TreeSnapshot(source).entries)
        let (code, log) = mount.stop()
        #expect(code == 0, "\(log)")
    }

    @Test("a job backs up into S3 with keys from its credentials file, and its history lives in the store")
    func jobIntoS3() throws {
        guard let ceph = CephS3.require() else { return }
        let store = ceph.newStore("job")
        let source = scratch.sub("data")
        mkdirs(source)
        write(source + "/a", randomBytes(500_000, seed: 81 << 8))
        let keys = scratch.sub("s3.env")
        write(keys, Array("AWS_ACCESS_KEY_ID=\(ceph.accessKey)\nAWS_SECRET_ACCESS_KEY=\(ceph.secretKey)\n".utf8))
        let job = scratch.sub("web.toml")
        write(
            job,
            Array(
                """
                store = "\(store)"
                credentials_file = "\(keys)"
                sources = ["\(source)"]
                [shadow_copy]
                enabled = false
                """.utf8))
        // No keys in the environment: the job's file is the only source.
        let env = ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "XDG_CACHE_HOME": scratch.sub("cache")]
        for _ in 0..<2 {
            let r = try CLI.run(["job", "run", job], environment: env)
            #expect(r.code == 0, "\(r.stderr)")
        }
        let history = try cli(ceph, ["job", "history", "--store", store, "--json"])
        #expect(history.code == 0, "\(history.stderr)")
        #expect(history.stdout.components(separatedBy: "\"result\"").count - 1 == 2, "\(history.stdout)")
        let target = scratch.sub("restore")
        #expect(try cli(ceph, ["restore", "latest", "--store", store, "--target", target]).code == 0)
        #expect(contents(target + source) == contents(source))
    }

    @Test("two processes back up overlapping trees into one store at once: both restore; after prune every chunk is stored once")
    func concurrentBackups() throws {
        guard let ceph = CephS3.require() else { return }
        let store = ceph.newStore("two-hosts")
        #expect(try cli(ceph, ["init", "--store", store, "--min", "4096", "--avg", "16384", "--max", "65536"]).code == 0)
        let shared = randomBytes(4_000_000, seed: 21 << 8)
        let a = scratch.sub("host-a"), b = scratch.sub("host-b")
        for (dir, seed) in [(a, UInt64(22)), (b, 23)] {
            mkdirs(dir)
            write(dir + "/shared", shared)
            write(dir + "/own", randomBytes(3_000_000, seed: seed << 8))
        }
        let first = try ceph.start(["backup", "--store", store, a], cache: scratch.sub("cache-a"))
        let second = try ceph.start(["backup", "--store", store, b], cache: scratch.sub("cache-b"))
        first.waitUntilExit()
        second.waitUntilExit()
        #expect(first.terminationStatus == 0 && second.terminationStatus == 0)
        #expect(try cli(ceph, ["prune", "--store", store, "--max-unused", "0"]).code == 0)
        #expect(try cli(ceph, ["check", "--read-data", "--store", store]).code == 0)
        let opened = try StoreLocation.open(store, cacheDirectory: scratch.sub("cache"))
        var stored: [ChunkID: Int] = [:]
        for pack in try opened.packIDs() {
            for entry in try opened.readPackTrailer(pack) { stored[entry.id, default: 0] += 1 }
        }
        #expect(stored.values.allSatisfy { $0 == 1 }, "every blob is stored once")
        for (dir, snapshot) in zip(
            [a, b],
            try opened.snapshots().records.map(\.id).sorted { x, y in
                ((try? opened.loadSnapshot(id: x).paths) ?? []).first ?? "" < ((try? opened.loadSnapshot(id: y).paths) ?? []).first ?? ""
            })
        {
            let target = scratch.sub("restore-\(snapshot.prefix(6))")
            #expect(try cli(ceph, ["restore", snapshot, "--store", store, "--target", target]).code == 0)
            #expect(contents(target + dir) == contents(dir))
        }
    }

    @Test("two hosts with the same key share one encrypted S3 store: the second uploads no data chunk the first stored, and both restore")
    func twoHostsOneKey() throws {
        guard let ceph = CephS3.require() else { return }
        let store = ceph.newStore("one-key")
        #expect(try cli(ceph, ["init", "--store", store, "--min", "4096", "--avg", "16384", "--max", "65536"]).code == 0)
        let opened = try StoreLocation.open(store, cacheDirectory: scratch.sub("cache"))
        #expect(opened.cipher.isEncrypted && opened.config.version == 3)
        let shared = randomBytes(3_000_000, seed: 24 << 8)
        let a = scratch.sub("key-host-a"), b = scratch.sub("key-host-b")
        for dir in [a, b] {
            mkdirs(dir)
            write(dir + "/shared.bin", shared)
        }
        func backup(_ dir: String, cache: String) throws -> CLI.Result {
            try CLI.run(["backup", "--store", store, dir, "--json"], environment: ceph.environment(cache: scratch.sub(cache)))
        }
        let first = try backup(a, cache: "host-a-cache")
        #expect(first.code == 0 && !first.stdout.contains("\"chunksNew\":0"), "\(first.stderr)")
        let second = try backup(b, cache: "host-b-cache")
        #expect(second.code == 0 && second.stdout.contains("\"chunksNew\":0"), "\(second.stdout.suffix(600)) \(second.stderr)")
        for dir in [a, b] {
            let target = scratch.sub("one-key-restore" + dir.suffix(1))
            let snapshot = try #require(
                try StoreLocation.open(store, cacheDirectory: scratch.sub("cache")).snapshots().records.first { $0.record.paths == [dir] }?.id)
            #expect(try cli(ceph, ["restore", snapshot, "--store", store, "--target", target]).code == 0)
            #expect(contents(target + dir) == contents(dir))
        }
    }

    @Test("prune refuses while a backup holds the store, and loses nothing")
    func pruneDuringBackup() throws {
        guard let ceph = CephS3.require() else { return }
        let store = ceph.newStore("prune-backup")
        #expect(try cli(ceph, ["init", "--store", store]).code == 0)
        let source = scratch.sub("data")
        mkdirs(source)
        write(source + "/old", randomBytes(2_000_000, seed: 31 << 8))
        #expect(try cli(ceph, ["backup", "--store", store, source]).code == 0)
        write(source + "/new", randomBytes(60_000_000, seed: 32 << 8))
        let backup = try ceph.start(["backup", "--store", store, source], cache: scratch.sub("cache-b"))
        let opened = try StoreLocation.open(store, cacheDirectory: scratch.sub("cache"))
        var sawLock = false
        let deadline = Date().addingTimeInterval(60)
        while backup.isRunning && Date() < deadline {
            if !StoreLock.list(opened).isEmpty {
                sawLock = true
                // Held still, so it cannot finish (and let go of its lock) before prune looks.
                let prune = try backup.heldStill { try cli(ceph, ["prune", "--store", store]) }
                #expect(prune.code == 1)
                #expect(prune.stderr.contains("backup"), "\(prune.stderr)")
                break
            }
            usleep(2_000)
        }
        backup.waitUntilExit()
        #expect(sawLock, "prune met the running backup")
        #expect(backup.terminationStatus == 0)
        #expect(try cli(ceph, ["prune", "--store", store]).code == 0)
        #expect(try cli(ceph, ["check", "--read-data", "--store", store]).code == 0)
        let target = scratch.sub("restore")
        #expect(try cli(ceph, ["restore", "latest", "--store", store, "--target", target]).code == 0)
        #expect(contents(target + source) == contents(source))
    }

    @Test("the gateway stopped during a backup: it fails after its retries, the store checks clean, and the next backup succeeds")
    func gatewayStoppedDuringBackup() throws {
        guard let ceph = CephS3.require() else { return }
        let store = ceph.newStore("rgw-stop")
        #expect(try cli(ceph, ["init", "--store", store]).code == 0)
        let source = scratch.sub("data")
        mkdirs(source)
        write(source + "/first", randomBytes(3_000_000, seed: 41 << 8))
        #expect(try cli(ceph, ["backup", "--store", store, source]).code == 0)
        let firstFiles = contents(source)
        write(source + "/big", randomBytes(40_000_000, seed: 42 << 8))
        var env = ceph.environment(cache: scratch.sub("cache-b"), retries: 3)
        env["SHADOWMOVER_S3_CONNECTIONS"] = "2"
        let err = Subprocess.Collector()
        let p = try startCLI(["backup", "--store", store, source], environment: env, stderr: err)
        // Once the backup holds its lock (it is writing), hold it still, stop the gateway under it, and
        // let it go on: every request it makes from then on fails.
        let opened = try StoreLocation.open(store, cacheDirectory: scratch.sub("cache"))
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Date() < deadline && StoreLock.list(opened).isEmpty { usleep(5_000) }
        p.heldStill { ceph.stopGateway() }
        p.waitUntilExit()
        let message = err.text(by: .now() + 10)
        ceph.startGateway()
        #expect(p.terminationStatus == 1)
        #expect(message.contains("cannot reach the S3 endpoint"), "\(message)")
        #expect(try cli(ceph, ["check", "--store", store]).code == 0)
        let records = try StoreLocation.open(store, cacheDirectory: scratch.sub("cache")).snapshots().records
        #expect(records.count == 1, "the failed backup committed nothing")
        let target = scratch.sub("restore")
        #expect(try cli(ceph, ["restore", records[0].id, "--store", store, "--target", target]).code == 0)
        #expect(contents(target + source) == firstFiles)
        try FileManager.default.removeItem(atPath: source + "/big")
        write(source + "/second", randomBytes(2_000_000, seed: 43 << 8))
        let next = try cli(ceph, ["backup", "--store", store, source])
        #expect(next.code == 0, "\(next.stderr)")
    }

    @Test("the gateway restarted during a restore: retries carry it through")
    func gatewayRestartedDuringRestore() throws {
        guard let ceph = CephS3.require() else { return }
        let store = ceph.newStore("rgw-restart")
        #expect(try cli(ceph, ["init", "--store", store]).code == 0)
        let source = scratch.sub("data")
        mkdirs(source)
        write(source + "/big", randomBytes(150_000_000, seed: 51 << 8))
        #expect(try cli(ceph, ["backup", "--store", store, source]).code == 0)
        let target = scratch.sub("restore")
        // A short look-ahead, so most of the file is still to be fetched when the gateway goes.
        var env = ceph.environment(cache: scratch.sub("cache-r"))
        env["SHADOWMOVER_S3_READ_AHEAD_MIB"] = "8"
        env["SHADOWMOVER_S3_CONNECTIONS"] = "2"
        let restore = try startCLI(["restore", "latest", "--store", store, "--target", target, "--workers", "1"], environment: env)
        // Once the restore has written the file's first bytes, hold it still and stop the gateway under
        // it (whatever this machine's speed: no fixed sleep), then let it go on against a dead gateway.
        let file = target + source + "/big"
        let deadline = Date().addingTimeInterval(60)
        while restore.isRunning && Date() < deadline && writtenBytes(file) == 0 { usleep(1_000) }
        let (written, wasRunning) = restore.heldStill {
            let state = (writtenBytes(file), restore.isRunning)
            ceph.stopGateway()
            return state
        }
        usleep(1_000_000)
        ceph.startGateway()
        restore.waitUntilExit()
        #expect(wasRunning && written > 0 && written < 100_000_000, "the restore was stopped mid-file (\(written) bytes written)")
        #expect(restore.terminationStatus == 0)
        #expect(contents(target + source) == contents(source))
    }

    @Test("bad input: wrong endpoint, wrong keys, a missing bucket, a bucket without a store, a missing or truncated object")
    func badInput() throws {
        guard let ceph = CephS3.require() else { return }
        let nowhere = try cli(ceph, ["snapshots", "--store", "s3:http://127.0.0.1:9/bucket/store"], retries: 1)
        #expect(nowhere.code == 1)
        #expect(nowhere.stderr.contains("cannot reach the S3 endpoint http://127.0.0.1:9"), "\(nowhere.stderr)")

        let store = ceph.newStore("bad")
        var wrongKeys = ceph.environment(cache: scratch.sub("cache"))
        wrongKeys["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        let refused = try CLI.run(["init", "--store", store], environment: wrongKeys)
        #expect(refused.code == 1)
        #expect(refused.stderr.contains("403") && refused.stderr.contains("AWS_SECRET_ACCESS_KEY"), "\(refused.stderr)")

        let missing = try cli(ceph, ["snapshots", "--store", store])
        #expect(missing.code == 1)
        #expect(missing.stderr.contains("does not exist") && missing.stderr.contains("shadowmover init"), "\(missing.stderr)")

        // A bucket holding something else.
        let bucket = String(store.split(separator: "/")[2])
        let client = S3Client(endpoint: URL(string: ceph.endpoint)!, bucket: bucket, credentials: ceph.credentials)
        try client.createBucket()
        try Array("not a store".utf8).withUnsafeBytes { try client.put("store/readme.txt", [$0]) }
        let other = try cli(ceph, ["snapshots", "--store", store])
        #expect(other.code == 1 && other.stderr.contains("has no config"), "\(other.stderr)")
        let initThere = try cli(ceph, ["init", "--store", store])
        #expect(initThere.code == 1 && initThere.stderr.contains("already holds 1 object"), "\(initThere.stderr)")

        // A store whose objects go missing or shrink: named, never a crash.
        let good = ceph.newStore("damaged")
        #expect(try cli(ceph, ["init", "--store", good, "--min", "4096", "--avg", "16384", "--max", "65536"]).code == 0)
        let source = scratch.sub("data")
        mkdirs(source)
        write(source + "/a", randomBytes(300_000, seed: 61 << 8))
        write(source + "/b", randomBytes(300_000, seed: 62 << 8))
        #expect(try cli(ceph, ["backup", "--store", good, source]).code == 0)
        let opened = try StoreLocation.open(good, cacheDirectory: scratch.sub("cache"))
        let packs = try opened.packIDs()
        try #require(packs.count >= 1)
        let goodBucket = String(good.split(separator: "/")[2])
        let goodClient = S3Client(endpoint: URL(string: ceph.endpoint)!, bucket: goodBucket, credentials: ceph.credentials)
        let key = "store/" + ObjectKey.pack(packs[0])
        let bytes = try #require(try goodClient.get(key))
        try Array(bytes.prefix(bytes.count / 2)).withUnsafeBytes { try goodClient.put(key, [$0]) }
        let check = try cli(ceph, ["check", "--read-data", "--store", good])
        #expect(check.code == 1)
        #expect((check.stdout + check.stderr).contains(packs[0].hex), "\(check.stdout)")
        try goodClient.delete(key)
        let restore = try cli(ceph, ["restore", "latest", "--store", good, "--target", scratch.sub("r")])
        #expect(restore.code == 1)
        #expect(restore.stderr.contains(packs[0].hex) && restore.stderr.contains("missing"), "\(restore.stderr)")
    }

    @Test("two prunes at once: one runs, the other refuses; a lock of a host that was killed is reported until unlock")
    func locksOnObjectStorage() throws {
        guard let ceph = CephS3.require() else { return }
        let store = ceph.newStore("locks")
        #expect(try cli(ceph, ["init", "--store", store]).code == 0)
        let source = scratch.sub("data")
        mkdirs(source)
        for i in 0..<3 {
            write(source + "/f", randomBytes(2_000_000, seed: UInt64(70 + i) << 8))
            #expect(try cli(ceph, ["backup", "--store", store, source]).code == 0)
        }
        #expect(try cli(ceph, ["forget", "--keep-last", "1", "--apply", "--store", store]).code == 0)
        let results = Results()
        let env = [ceph.environment(cache: scratch.sub("cache-1")), ceph.environment(cache: scratch.sub("cache-2"))]
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            results.add(try? CLI.run(["prune", "--store", store], environment: env[i]))
        }
        // Each prune either ran or refused because the other held the store; neither ran over the other.
        for r in results.all {
            #expect(r?.code == 0 || r?.stderr.contains("locked") == true, "\(r?.stderr ?? "no result")")
        }
        #expect(try cli(ceph, ["prune", "--store", store]).code == 0)
        #expect(try cli(ceph, ["check", "--read-data", "--store", store]).code == 0)

        // A lock left by a host that was killed: silent for longer than the stale limit.
        let opened = try StoreLocation.open(store, cacheDirectory: scratch.sub("cache"))
        let record =
            #"{"created":"2026-01-01T00:00:00.000000000Z","exclusive":false,"heartbeat":"2026-01-01T00:00:00.000000000Z","host":"killed-host","pid":4242,"purpose":"backup"}"#
        try opened.backend.put(ObjectKey.lock(String(repeating: "ef", count: 32)), opened.cipher.sealObject(Array(record.utf8), kind: .lock))
        let blocked = try cli(ceph, ["prune", "--store", store])
        #expect(blocked.code == 1)
        #expect(blocked.stderr.contains("stale lock") && blocked.stderr.contains("killed-host") && blocked.stderr.contains("unlock"), "\(blocked.stderr)")
        #expect(try cli(ceph, ["unlock", "--store", store]).stdout.contains("1 lock(s) removed"))
        #expect(try cli(ceph, ["prune", "--store", store]).code == 0)
    }
}

/// Results gathered from several threads.
final class Results: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var values: [CLI.Result?] = []
    func add(_ r: CLI.Result?) { lock.withLock { values.append(r) } }
    var all: [CLI.Result?] { lock.withLock { values } }
}
