import ChunkStore
import Foundation
import Testing

/// Every regular file below `root`, with its bytes.
private func storeObjects(_ root: String) -> [(path: String, bytes: [UInt8])] {
    var out: [(String, [UInt8])] = []
    let e = FileManager.default.enumerator(atPath: root)
    while let rel = e?.nextObject() as? String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), !isDir.boolValue,
            let data = FileManager.default.contents(atPath: root + "/" + rel)
        else { continue }
        out.append((rel, Array(data)))
    }
    return out
}

private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard needle.count <= haystack.count, let first = needle.first else { return false }
    var i = 0
    while i <= haystack.count - needle.count {
        if haystack[i] == first && Array(haystack[i..<(i + needle.count)]) == needle { return true }
        i += 1
    }
    return false
}

/// A pristine encrypted store with one snapshot of a small tree, copied for each tampering case.
private struct EncryptedFixture {
    let scratch = Scratch("enc")
    var source: String { scratch.sub("source") }
    var store: String { scratch.sub("store") }

    init() throws {
        mkdirs(source + "/sub")
        write(source + "/a", randomBytes(300_000, seed: 301 << 8))
        write(source + "/b.txt", Array(String(repeating: "some text that compresses well\n", count: 4000).utf8))
        write(source + "/sub/c", randomBytes(100_000, seed: 302 << 8))
        let r = try CLI.run(["init", "--store", store, "--min", "4096", "--avg", "16384", "--max", "65536"])
        #expect(r.code == 0, "\(r.stderr)")
        let b = try CLI.run(["backup", "--store", store, source])
        #expect(b.code == 0, "\(b.stderr)")
    }

    /// A copy of the store to damage.
    func copy(_ name: String) throws -> String {
        let path = scratch.sub(name)
        #expect(try Shell.run(["cp", "-a", store, path]).code == 0)
        return path
    }

    func files(_ store: String, under directory: String) -> [String] {
        storeObjects(store + "/" + directory).map { "\(store)/\(directory)/\($0.path)" }.filter { !$0.split(separator: "/").last!.hasPrefix(".") }
    }
}

@Suite("Encryption at rest")
struct EncryptionTests {
    let scratch = Scratch("encryption")

    @Test(
        "no plaintext of a backed-up file — a distinctive string, a random file's bytes, a file name — is in any object of an encrypted store (a store without encryption shows them)"
    )
    func noPlaintextInObjects() throws {
        let source = scratch.sub("source")
        mkdirs(source)
        let canary = "ShadowMover canary 7f3a9c: the quick brown fox"
        write(source + "/canary-notes-2f7d.txt", Array((0..<200).map { "\(canary) line \($0)\n" }.joined().utf8))
        let random = randomBytes(1 << 20, seed: 303 << 8)
        write(source + "/random.bin", random)
        let samples = stride(from: 0, to: random.count - 32, by: random.count / 64).map { Array(random[$0..<($0 + 32)]) }
        for encrypted in [true, false] {
            let store = scratch.sub(encrypted ? "encrypted" : "plain")
            // Uncompressed, so that the store without encryption holds the bytes as they are.
            #expect(try CLI.run(["init", "--store", store, "--codec", "none"] + (encrypted ? [] : ["--no-encryption"])).code == 0)
            #expect(try CLI.run(["backup", "--store", store, source]).code == 0)
            let objects = storeObjects(store)
            #expect(objects.count >= 4)
            let canaryFound = objects.filter { contains($0.bytes, Array("ShadowMover canary 7f3a9c".utf8)) }.map(\.path)
            let nameFound = objects.filter { contains($0.bytes, Array("canary-notes-2f7d".utf8)) }.map(\.path)
            let sampleFound = objects.filter { o in samples.contains { contains(o.bytes, $0) } }.map(\.path)
            if encrypted {
                #expect(canaryFound.isEmpty && nameFound.isEmpty && sampleFound.isEmpty, "plaintext in \(canaryFound + nameFound + sampleFound)")
            } else {
                #expect(!canaryFound.isEmpty && !nameFound.isEmpty && !sampleFound.isEmpty, "the search finds plaintext where there is some")
            }
        }
    }

    @Test("two encrypted stores backing up the same file give it different chunk ids; stores without encryption give the same")
    func keyedIDs() throws {
        let source = scratch.sub("same")
        mkdirs(source)
        // Over twice the largest chunk (4 MiB), so every gear table cuts it at least twice: with 2 MB a
        // keyed table found no cut in about one run of fifty and the file was one chunk.
        write(source + "/f", randomBytes(9_000_000, seed: 304 << 8))
        var ids: [String: Set<ChunkID>] = [:]
        for name in ["enc-1", "enc-2", "plain-1", "plain-2"] {
            let store = scratch.sub(name)
            // The plaintext stores use the reference gear table, so they cut the file alike.
            #expect(try CLI.run(["init", "--store", store] + (name.hasPrefix("plain") ? ["--no-encryption", "--unkeyed"] : [])).code == 0)
            #expect(try CLI.run(["backup", "--store", store, source]).code == 0)
            let opened = try Store(path: store)
            ids[name] = Set(try opened.packIDs().flatMap { try opened.readPackTrailer($0).filter { $0.type == .data }.map(\.id) })
        }
        #expect(ids["enc-1"]!.count >= 2)
        #expect(ids["enc-1"]!.isDisjoint(with: ids["enc-2"]!))
        #expect(ids["enc-1"]!.isDisjoint(with: ids["plain-1"]!))
        #expect(ids["plain-1"] == ids["plain-2"])
    }

    @Test("key add, remove and passwd: the store restores after each with the keys that remain, and the last key cannot be removed")
    func keyManagement() throws {
        let source = scratch.sub("data")
        mkdirs(source)
        write(source + "/f", randomBytes(200_000, seed: 305 << 8))
        let store = scratch.sub("store")
        let keyFile = scratch.sub("store.key")
        func run(_ args: [String], password: String? = nil, newPassword: String? = nil) throws -> CLI.Result {
            var env = ["SHADOWMOVER_PASSWORD": password ?? ""]
            if password == nil { env["SHADOWMOVER_PASSWORD"] = nil }
            if let newPassword { env["SHADOWMOVER_NEW_PASSWORD"] = newPassword }
            var full = args + ["--store", store]
            if password == nil { full += ["--key-file", keyFile] }
            return try CLI.run(full, environment: env)
        }
        var restoreCount = 0
        func restores(_ password: String?) throws -> Bool {
            restoreCount += 1
            let target = scratch.sub("restore-\(restoreCount)")
            let r = try run(["restore", "latest", "--target", target], password: password)
            return r.code == 0 && contents(target + source) == contents(source)
        }
        func slots() throws -> [String] { try Store(path: store, secret: .password("one")).keySlots().slots.map(\.id) }

        #expect(try CLI.run(["init", "--store", store], environment: ["SHADOWMOVER_PASSWORD": "one"]).code == 0)
        #expect(try run(["backup", source], password: "one").code == 0)
        let first = try slots()
        #expect(first.count == 1)

        #expect(try run(["key", "add"], password: "one", newPassword: "two").code == 0)
        #expect(try restores("two"))
        #expect(try run(["key", "add", "--new-key-file", keyFile, "--kdf-memory", "1"], password: "one").code == 0)
        #expect(try restores(nil), "the key file opens the store")
        let list = try run(["key", "list"], password: "two")
        #expect(list.stdout.contains("keyfile") && list.stdout.components(separatedBy: "password").count - 1 == 2, "\(list.stdout)")

        // The slot in use cannot be removed; with another key it can.
        let inUse = try run(["key", "remove", String(first[0].prefix(12))], password: "one")
        #expect(inUse.code == 1 && inUse.stderr.contains("is the one this command opened the store with"), "\(inUse.stderr)")
        #expect(try run(["key", "remove", String(first[0].prefix(12))], password: "two").code == 0)
        let old = try run(["snapshots"], password: "one")
        #expect(old.code == 1 && old.stderr.contains("wrong password"), "\(old.stderr)")
        #expect(try restores("two"))

        // passwd replaces the slot that opened the store.
        let changed = try run(["key", "passwd"], password: "two", newPassword: "three")
        #expect(changed.code == 0, "\(changed.stderr)")
        #expect(try run(["snapshots"], password: "two").code == 1)
        #expect(try restores("three"))
        #expect(try restores(nil))

        // Remove the key file's slot; the one left is the last and stays.
        let keyFileSlot = try Store(path: store, secret: .password("three")).keySlots().slots.first { $0.slot?.kind == .keyFile }!.id
        #expect(try run(["key", "remove", keyFileSlot], password: "three").code == 0)
        let noSlot = try run(["snapshots"], password: nil)
        #expect(noSlot.code == 1 && noSlot.stderr.contains("opens no key slot"), "\(noSlot.stderr)")
        let last = try Store(path: store, secret: .password("three")).keySlots().slots[0].id
        let before = storeListing(store)
        let refused = try run(["key", "remove", last], password: "three")
        #expect(refused.code == 1 && refused.stderr.contains("last"), "\(refused.stderr)")
        #expect(storeListing(store) == before)
        #expect(try restores("three"))
    }

    @Test("wrong, missing and empty passwords, failing or silent password commands and another store's key file each get a clear error and change nothing")
    func badSecrets() throws {
        let store = scratch.sub("store")
        let otherKey = scratch.sub("other.key")
        #expect(try CLI.run(["init", "--store", store], environment: ["SHADOWMOVER_PASSWORD": "right"]).code == 0)
        #expect(try CLI.run(["init", "--store", scratch.sub("other"), "--key-file", otherKey]).code == 0)
        let passwordFile = scratch.sub("password")
        write(passwordFile, Array("right\n".utf8))
        let before = storeListing(store)
        let cases: [(args: [String], env: [String: String], message: String)] = [
            ([], ["SHADOWMOVER_PASSWORD": "wrong"], "wrong password: it opens no key slot"),
            ([], ["SHADOWMOVER_PASSWORD": ""], "the password is empty"),
            ([], ["SHADOWMOVER_PASSWORD_COMMAND": "exit 3"], "failed (exit status 3)"),
            ([], ["SHADOWMOVER_PASSWORD_COMMAND": "true"], "printed nothing"),
            (["--key-file", otherKey], [:], "belongs to store"),
            (["--key-file", scratch.sub("missing.key")], [:], "does not exist"),
            (["--password-file", scratch.sub("missing")], [:], "cannot read the password file"),
            ([], [:], "is encrypted: give its password with --password-file"),
        ]
        /// Runs without the tests' password in the environment, and with no terminal.
        func run(_ args: [String], _ env: [String: String]) throws -> (code: Int32, stderr: String) {
            var full = CLI.environment([:])
            full.removeValue(forKey: "SHADOWMOVER_PASSWORD")
            for (k, v) in env { full[k] = v }
            let r = try Subprocess.run([CLI.binary] + args, environment: full)
            return (r.code, r.stderr)
        }
        for c in cases {
            let r = try run(["snapshots", "--store", store] + c.args, c.env)
            #expect(r.code == 1 && r.stderr.contains(c.message), "\(c): \(r.stderr)")
        }
        #expect(storeListing(store) == before)
        // The right password from a file (which wins over the environment) and from a command.
        #expect(try run(["snapshots", "--store", store, "--password-file", passwordFile], ["SHADOWMOVER_PASSWORD": "wrong"]).code == 0)
        #expect(try run(["snapshots", "--store", store], ["SHADOWMOVER_PASSWORD_COMMAND": "cat \(passwordFile)"]).code == 0)
        // An empty password only with --insecure-empty-password.
        let empty = try CLI.run(["init", "--store", scratch.sub("empty")], environment: ["SHADOWMOVER_PASSWORD": ""])
        #expect(empty.code == 1 && empty.stderr.contains("--insecure-empty-password"))
        #expect(!FileManager.default.fileExists(atPath: scratch.sub("empty/config")))
        #expect(try CLI.run(["init", "--store", scratch.sub("empty"), "--insecure-empty-password"], environment: ["SHADOWMOVER_PASSWORD": ""]).code == 0)
        // A store without encryption has no keys to manage, and says so loudly when made.
        let plain = try CLI.run(["init", "--store", scratch.sub("plain"), "--no-encryption"])
        #expect(plain.code == 0 && plain.stderr.contains("WITHOUT encryption"))
        let addKey = try CLI.run(["key", "add", "--store", scratch.sub("plain")], environment: ["SHADOWMOVER_NEW_PASSWORD": "x"])
        #expect(addKey.code == 1 && addKey.stderr.contains("not encrypted"), "\(addKey.stderr)")
    }

    @Test(
        "tampering with any object of an encrypted store is detected and named: packs' blobs and trailers, index, snapshot, config, key slot, lock, job record")
    func tampering() throws {
        let f = try EncryptedFixture()
        // A job record and a lock, for their cases.
        do {
            let opened = try Store(path: f.store)
            try opened.appendJobRun(job: "nightly", name: "2026-11-25T00:00:00.000000000Z-00000000.json", bytes: Array("{}".utf8))
        }
        func expectFailure(_ store: String, _ args: [String], naming parts: [String], _ what: String) throws {
            let r = try CLI.run(args + ["--store", store])
            #expect(r.code == 1, "\(what): exit \(r.code)")
            for p in parts { #expect((r.stdout + r.stderr).contains(p), "\(what): '\(p)' not in \(r.stdout + r.stderr)") }
        }
        func packSize(_ path: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }

        // A blob: check --read-data and restore name the blob's pack and the file.
        var store = try f.copy("blob")
        var pack = f.files(store, under: "packs")[0]
        flipByte(pack, at: 10)
        let packID = String(pack.split(separator: "/").last!)
        try expectFailure(store, ["check", "--read-data"], naming: [packID, "authentication failed"], "blob")
        try expectFailure(store, ["restore", "latest", "--target", f.scratch.sub("t-blob")], naming: ["authentication failed"], "restore of a tampered blob")

        // A pack's trailer.
        store = try f.copy("trailer")
        pack = f.files(store, under: "packs")[0]
        flipByte(pack, at: packSize(pack) - 30)
        try expectFailure(store, ["check"], naming: [String(pack.split(separator: "/").last!), "its trailer: authentication failed"], "trailer")

        // An index segment (and no stale plaintext copy in the cache stands in for it).
        store = try f.copy("index")
        let segment = f.files(store, under: "index")[0]
        flipByte(segment, at: 40)
        // An empty cache of its own: removing the shared one would pull it from under tests running beside this one.
        try expectFailure(
            store, ["check", "--cache-dir", f.scratch.sub("fresh-cache")], naming: [String(segment.split(separator: "/").last!), "authentication failed"],
            "index segment")

        // A snapshot record: changed in place (its name is its hash), and changed then renamed to match.
        store = try f.copy("snapshot")
        let snapshot = f.files(store, under: "snapshots")[0]
        flipByte(snapshot, at: 60)
        try expectFailure(store, ["ls", "latest"], naming: ["checksum mismatch"], "snapshot")
        let renamed = "\(store)/snapshots/\(ChunkID(hashing: Array(FileManager.default.contents(atPath: snapshot)!)).hex)"
        #expect(rename(snapshot, renamed) == 0)
        try expectFailure(store, ["ls", "latest"], naming: [String(renamed.split(separator: "/").last!), "authentication failed"], "renamed snapshot")

        // The config's sealed part.
        store = try f.copy("config")
        var config = String(decoding: FileManager.default.contents(atPath: store + "/config")!, as: UTF8.self)
        let sealedStart = config.range(of: "\"config\":\"")!.upperBound
        let digit = config[config.index(sealedStart, offsetBy: 80)]
        config.replaceSubrange(config.index(sealedStart, offsetBy: 80)...config.index(sealedStart, offsetBy: 80), with: digit == "0" ? "1" : "0")
        // Re-seal the checksum so that the authentication, not the checksum, is what catches it.
        config = config.replacingOccurrences(of: #","checksum":"[0-9a-f]{64}"\}"#, with: "}", options: .regularExpression)
        let json = Array(config.utf8)
        config = String(decoding: json.dropLast(), as: UTF8.self) + ",\"checksum\":\"\(ChunkID(hashing: json).hex)\"}"
        chmod(store + "/config", 0o644)
        write(store + "/config", Array(config.utf8))
        try expectFailure(store, ["snapshots"], naming: ["config", "sealed part does not open", "authentication failed"], "config")

        // A downgrade: the config replaced by one without encryption. Refused, so that nothing is
        // written to the store in the clear.
        store = try f.copy("downgrade")
        let plain = f.scratch.sub("plain-for-config")
        #expect(try CLI.run(["init", "--no-encryption", "--store", plain]).code == 0)
        chmod(store + "/config", 0o644)
        write(store + "/config", Array(FileManager.default.contents(atPath: plain + "/config")!))
        try expectFailure(store, ["backup", f.source], naming: ["not encrypted, but the store has key slots"], "downgraded config")

        // A key slot: its wrapped key does not open; a second slot still does.
        store = try f.copy("slot")
        #expect(try CLI.run(["key", "add", "--store", store, "--kdf-memory", "1"], environment: ["SHADOWMOVER_NEW_PASSWORD": "spare"]).code == 0)
        let opened = try Store(path: store)
        let firstSlot = try opened.keySlots().current!
        let slotPath = "\(store)/keys/\(firstSlot)"
        var slot = String(decoding: FileManager.default.contents(atPath: slotPath)!, as: UTF8.self)
        let wrapped = slot.range(of: "\"wrapped\":\"")!.upperBound
        slot.replaceSubrange(wrapped...wrapped, with: slot[wrapped] == "0" ? "1" : "0")
        chmod(slotPath, 0o644)
        write(slotPath, Array(slot.utf8))
        try expectFailure(store, ["snapshots"], naming: ["wrong password"], "key slot")
        #expect(try CLI.run(["snapshots", "--store", store], environment: ["SHADOWMOVER_PASSWORD": "spare"]).code == 0)

        // A lock left by a process: it blocks prune, named as unreadable.
        store = try f.copy("lock")
        let lock = try StoreLock.acquire(try Store(path: store), exclusive: false, purpose: "test")
        let lockFile = f.files(store, under: "locks")[0]
        flipByte(lockFile, at: 50)
        try expectFailure(store, ["prune"], naming: ["unreadable lock", String(lockFile.split(separator: "/").last!)], "lock")
        lock.release()

        // A job record: left out of the history, named.
        store = try f.copy("job")
        let record = f.files(store, under: "jobs")[0]
        #expect(!record.contains("nightly"), "an encrypted store's keys do not name its jobs: \(record)")
        flipByte(record, at: 40)
        let history = try CLI.run(["job", "history", "--store", store])
        let recordKey = "jobs/" + record.components(separatedBy: "/jobs/")[1]
        #expect(history.code == 0 && history.stderr.contains(recordKey) && history.stderr.contains("authentication failed"), "\(history.stderr)")
    }

    @Test("a store without encryption (format version 2) still backs up, restores, checks and prunes; the default key slot uses 64 MiB of scrypt")
    func plaintextStoreAndDefaults() throws {
        let source = scratch.sub("v2-data")
        mkdirs(source)
        write(source + "/f", randomBytes(500_000, seed: 306 << 8))
        let store = scratch.sub("v2")
        #expect(try CLI.run(["init", "--no-encryption", "--store", store]).code == 0)
        #expect(String(decoding: FileManager.default.contents(atPath: store + "/config")!, as: UTF8.self).contains("\"version\":2"))
        #expect(try CLI.run(["backup", "--store", store, source]).code == 0)
        let target = scratch.sub("v2-restore")
        #expect(try CLI.run(["restore", "latest", "--store", store, "--target", target], environment: ["SHADOWMOVER_PASSWORD": "ignored"]).code == 0)
        #expect(contents(target + source) == contents(source))
        #expect(try CLI.run(["check", "--read-data", "--store", store]).code == 0)
        #expect(try CLI.run(["prune", "--store", store]).code == 0)

        let encrypted = scratch.sub("default-kdf")
        #expect(try CLI.run(["init", "--store", encrypted, "--kdf-memory", "64"]).code == 0)
        let slot = try #require(try Store(path: encrypted).keySlots().slots.first?.slot)
        #expect(slot.kdf.name == "scrypt" && 128 * (slot.kdf.n ?? 0) * (slot.kdf.r ?? 0) >= 64 << 20, "\(slot.kdf)")
    }

    @Test("prune repacks an encrypted store: blobs are opened and sealed again under the new packs' keys, and everything still restores")
    func pruneEncrypted() throws {
        let f = try EncryptedFixture()
        write(f.source + "/d", randomBytes(400_000, seed: 307 << 8))
        #expect(try CLI.run(["backup", "--store", f.store, f.source]).code == 0)
        let oldest = try Store(path: f.store).snapshots().records.first!.id
        #expect(try CLI.run(["forget", oldest, "--apply", "--store", f.store]).code == 0)
        unlink(f.source + "/a")
        #expect(try CLI.run(["backup", "--store", f.store, f.source]).code == 0)
        let p = try CLI.run(["prune", "--store", f.store, "--max-unused", "0"])
        #expect(p.code == 0, "\(p.stderr)")
        #expect(try CLI.run(["check", "--read-data", "--store", f.store]).code == 0)
        let target = f.scratch.sub("after-prune")
        #expect(try CLI.run(["restore", "latest", "--store", f.store, "--target", target]).code == 0)
        #expect(contents(target + f.source) == contents(f.source))
    }
}
