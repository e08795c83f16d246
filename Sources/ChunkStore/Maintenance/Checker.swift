import Compression
import Foundation

/// Verifies a store (`shadowmover check`): its structure always — config, every index segment against
/// the pack trailers, every snapshot record and every tree reachable from them, every chunk the trees
/// reference — and with `readData`, the bytes of every blob (or a sample of the packs).
///
/// Every finding names the damaged object and, where chunks are affected, the snapshots and files that
/// reference them.
public struct Checker {
    /// The store checked.
    public let store: Store
    /// Threads verifying blobs with `readFraction` (each holds one pack in memory).
    public var workers: Int
    /// Reports of reading the data (nil: none).
    public var progress: ProgressSink?
    /// Raw bytes of a pack's blobs opened before their hashes are checked, all together: at least
    /// two blobs of the average chunk size. 8 MiB was no faster on /opt/swift and added up to 25 MiB
    /// to check's peak memory.
    static let verifyBytes = 2 << 20

    /// One problem: the damaged object, what is wrong, and what it affects.
    public struct Finding: Codable, Sendable, CustomStringConvertible {
        /// The object, as a user finds it ("pack …", "blob …", "tree …", "index segment …").
        public var object: String
        /// What is wrong with it.
        public var problem: String
        /// "SNAPSHOT-ID-PREFIX:/path" for every file or directory the problem affects.
        public var affects: [String]

        /// The finding and up to 20 of the paths it affects.
        public var description: String {
            "\(object): \(problem)"
                + (affects.isEmpty
                    ? ""
                    : "\n    affects " + affects.prefix(20).joined(separator: "\n    affects ")
                        + (affects.count > 20 ? "\n    … and \(affects.count - 20) more" : ""))
        }
    }

    /// What a check looked at and found.
    public struct Report: Codable, Sendable {
        /// Snapshot records read.
        public var snapshots = 0
        /// Distinct trees read.
        public var trees = 0
        /// Packs in the store.
        public var packs = 0
        /// Index entries checked against the packs' trailers.
        public var blobs = 0
        /// Blobs read, decrypted, decompressed and hashed (with `readFraction`).
        public var blobsRead = 0
        /// Every problem found.
        public var findings: [Finding] = []
        /// True when nothing was found.
        public var isClean: Bool { findings.isEmpty }
    }

    /// A checker of `store`, reading data on `Store.readers` threads.
    public init(store: Store) {
        self.store = store
        workers = store.readers
    }

    /// Check's steps. - Parameter readFraction: nil: structure only; 0–1: read and verify that share
    /// of the packs.
    public func run(readFraction: Double?) -> Report {
        let run = Run(store: store, readers: workers)
        run.checkIndexSegments()
        run.checkPacksAgainstIndex()
        run.checkSnapshotsAndTrees()
        if let fraction = readFraction {
            let chosen = run.packs.filter { run.trailers[$0] != nil && (fraction >= 1 || Double.random(in: 0..<1) < fraction) }
            let results = verify(chosen, trailers: run.trailers)
            run.report.blobsRead = results.read
            run.bad.merge(results.bad) { first, _ in first }
        }
        run.nameAffectedFiles()
        return run.report
    }

    /// The state of one check: what was found so far, and what later steps need.
    final class Run {
        let store: Store
        /// Threads loading trees ahead of the walks.
        let readers: Int
        var report = Report()
        /// Blob → problem, for the affected-files walk.
        var bad: [ChunkID: String] = [:]
        var packs: [ChunkID] = []
        var trailers: [ChunkID: [BlobEntry]] = [:]
        var records: [(id: String, record: SnapshotRecord)] = []
        private var seenTrees = Set<ChunkID>()
        private var treeProblems: [(snapshot: String, path: String, tree: ChunkID, problem: String)] = []

        init(store: Store, readers: Int) {
            self.store = store
            self.readers = readers
        }

        /// Index segments that could not be read.
        func checkIndexSegments() {
            for (name, error) in store.index.damagedSegments {
                report.findings.append(Finding(object: "index segment \(name)", problem: "\(error)", affects: []))
            }
        }

        /// Every pack's trailer, and every index entry against the trailer of its pack.
        func checkPacksAgainstIndex() {
            packs = (try? store.packIDs()) ?? []
            report.packs = packs.count
            for pack in packs {
                do { trailers[pack] = try store.readPackTrailer(pack) } catch {
                    report.findings.append(Finding(object: "pack \(pack)", problem: "\(error)", affects: []))
                }
            }
            for segment in store.index.segments {
                for i in 0..<segment.count {
                    report.blobs += 1
                    guard let location = segment.location(at: i) else {
                        report.findings.append(Finding(object: "index segment \(segment.name)", problem: "entry \(i) is malformed", affects: []))
                        continue
                    }
                    guard let entries = trailers[location.pack] else {
                        bad[location.entry.id] = "its pack \(location.pack) is missing or damaged"
                        continue
                    }
                    if !entries.contains(location.entry) {
                        bad[location.entry.id] = "the index entry does not match pack \(location.pack)'s trailer"
                    }
                }
            }
        }

        /// Every snapshot record and the trees below it: every referenced chunk must be indexed, and a
        /// file's chunks must hold its size.
        func checkSnapshotsAndTrees() {
            let (records, damaged) = (try? store.snapshots()) ?? ([], [])
            self.records = records
            for d in damaged { report.findings.append(Finding(object: "snapshot record", problem: "\(d)", affects: [])) }
            report.snapshots = records.count
            var sizeProblems: [String: (problem: String, affects: [String])] = [:]
            let trees = TreeReadAhead(store: store, threads: readers)
            defer { trees.stop() }
            for (id, record) in records {
                walk(record.tree, "", id, trees: trees) { node, path in
                    let ids = chunks(of: node)
                    for chunk in ids where bad[chunk] == nil && store.index.lookup(chunk) == nil {
                        bad[chunk] = "it is referenced but not in the index"
                    }
                    if let problem = store.sizeMismatch(node, content: ids) {
                        sizeProblems[path, default: (problem, [])].affects.append("\(id.prefix(8)):\(path)")
                    }
                }
            }
            for (path, p) in sizeProblems.sorted(by: { $0.key < $1.key }) {
                report.findings.append(Finding(object: "the tree entry of \(path)", problem: p.problem, affects: p.affects))
            }
            for t in treeProblems {
                report.findings.append(
                    Finding(object: "tree \(t.tree)", problem: t.problem, affects: ["\(t.snapshot.prefix(8)):\(t.path) and everything below"]))
            }
        }

        /// A finding for every bad blob, naming the files (in every snapshot) that reference it.
        func nameAffectedFiles() {
            guard !bad.isEmpty else { return }
            var references: [ChunkID: [String]] = [:]
            let trees = TreeReadAhead(store: store, threads: readers)
            defer { trees.stop() }
            for (id, record) in records {
                walk(record.tree, "", id, trees: trees) { node, path in
                    for blob in chunks(of: node) + node.metadataBlobs where bad[blob] != nil {
                        references[blob, default: []].append("\(id.prefix(8)):\(path)")
                    }
                }
            }
            for (id, problem) in bad.sorted(by: { $0.key < $1.key }) {
                report.findings.append(Finding(object: "blob \(id)", problem: problem, affects: Array(Set(references[id] ?? [])).sorted()))
            }
        }

        /// Calls `visit` for every entry below tree `id`; a tree that cannot be read is a finding once.
        private func walk(_ id: ChunkID, _ path: String, _ snapshot: String, depth: Int = 0, trees: TreeReadAhead, visit: (Node, String) -> Void) {
            let tree: Tree
            do {
                guard depth <= Tree.maximumDepth else { throw StoreError.damagedTree(id: id, reason: "it nests deeper than \(Tree.maximumDepth) directories") }
                tree = try trees.tree(id)
            } catch {
                if seenTrees.insert(id).inserted { treeProblems.append((snapshot, path.isEmpty ? "/" : path, id, "\(error)")) }
                return
            }
            if seenTrees.insert(id).inserted { report.trees += 1 }
            for node in tree.nodes {
                let full = path + "/" + node.name
                visit(node, full)
                if let sub = node.subtree { walk(sub, full, snapshot, depth: depth + 1, trees: trees, visit: visit) }
            }
        }

        /// A file's chunk ids; a content list that cannot be read is recorded as bad (its chunks are
        /// then unknown).
        private func chunks(of node: Node) -> [ChunkID] {
            var ids = node.content ?? []
            for list in node.contentLists ?? [] {
                do { ids += try store.loadContentList(list) } catch {
                    if bad[list] == nil { bad[list] = store.index.lookup(list) == nil ? "it is referenced but not in the index" : "\(error)" }
                }
            }
            return ids
        }
    }

    /// Reads each pack of `packs` whole (one read, not one per blob) and opens and verifies every blob
    /// its trailer lists, on `workers` threads. - Returns: the blobs read and the bad ones.
    func verify(_ packs: [ChunkID], trailers: [ChunkID: [BlobEntry]]) -> (read: Int, bad: [ChunkID: String]) {
        final class Tally: @unchecked Sendable {  // guarded by `lock`
            let lock = NSLock()
            var next = 0, read = 0
            var bad: [ChunkID: String] = [:]
        }
        let tally = Tally()
        let store = store
        let meter = ProgressMeter(action: "check")
        meter.found(
            bytes: packs.reduce(0) { total, pack in total + UInt64((trailers[pack] ?? []).map { Int($0.offset) + Int($0.storedLength) }.max() ?? 0) },
            files: packs.count)
        meter.totalKnown()
        meter.start(progress)
        defer { meter.stop() }
        let threads = WorkerThreads(count: max(1, min(workers, packs.count)), name: "check") { _ in
            let compressor = Compressor(codec: .none)
            var packBytes: [UInt8] = [], raw: [UInt8] = []
            while true {
                let i: Int = tally.lock.withLock {
                    defer { tally.next += 1 }; return tally.next
                }
                guard i < packs.count else { return }
                let pack = packs[i], entries = trailers[pack] ?? []
                var found: [ChunkID: String] = [:]
                do {
                    let end = entries.map { Int($0.offset) + Int($0.storedLength) }.max() ?? 0
                    let length = min(end, try store.packSize(pack))  // a blob past the end is reported below
                    if packBytes.count < length { packBytes = [UInt8](repeating: 0, count: length) }
                    let got = try packBytes.withUnsafeMutableBytes {
                        try store.readPack(pack, at: 0, into: UnsafeMutableRawBufferPointer(rebasing: $0[..<length]))
                    }
                    // Blobs are opened side by side into `raw`, up to `verifyBytes`, and their hashes
                    // checked together (two at a time: `BlobHash`).
                    var opened: [(location: BlobLocation, bytes: Range<Int>)] = []
                    func checkOpened() {
                        raw.withUnsafeBytes { r in
                            let blobs = opened.map { (raw: UnsafeRawBufferPointer(rebasing: r[$0.bytes]), location: $0.location) }
                            do {
                                try store.verify(blobs)
                            } catch {
                                for blob in blobs {  // which: each alone
                                    do { try store.verify([blob]) } catch { found[blob.location.entry.id] = "\(error)" }
                                }
                            }
                        }
                        opened.removeAll()
                    }
                    for entry in entries {
                        let location = BlobLocation(pack: pack, entry: entry)
                        do {
                            let rawLength = try store.checkBounds(location)
                            let from = Int(entry.offset), to = from + Int(entry.storedLength)
                            guard to <= got else { throw StoreError.damagedBlob(id: entry.id, pack: pack.hex, reason: "pack is truncated") }
                            let at = opened.last?.bytes.upperBound ?? 0
                            if raw.count < at + rawLength { raw += [UInt8](repeating: 0, count: at + rawLength - raw.count) }
                            try packBytes.withUnsafeBytes { p in
                                try raw.withUnsafeMutableBytes { r in
                                    try store.openUncheckedBlob(
                                        UnsafeRawBufferPointer(rebasing: p[from..<to]), location,
                                        into: UnsafeMutableRawBufferPointer(rebasing: r[at..<(at + rawLength)]), compressor: compressor)
                                }
                            }
                            opened.append((location, at..<(at + rawLength)))
                            if at + rawLength >= Self.verifyBytes { checkOpened() }
                        } catch {
                            found[entry.id] = "\(error)"
                        }
                    }
                    if !opened.isEmpty { checkOpened() }
                } catch {
                    for entry in entries { found[entry.id] = "\(error)" }
                }
                meter.done(entries.map { Int($0.offset) + Int($0.storedLength) }.max() ?? 0)
                meter.finishedFile()
                tally.lock.withLock {
                    tally.read += entries.count
                    tally.bad.merge(found) { first, _ in first }
                }
            }
        }
        threads.join()
        return (tally.read, tally.bad)
    }
}
