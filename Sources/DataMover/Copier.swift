import ChunkStore
import Chunking
import Foundation

/// Copies snapshots from one store to another (`copy`): local to S3, S3 to local, any pair. When both
/// stores cut and name chunks the same way (chunker parameters, gear table and chunk-id key: an
/// unencrypted pair, or stores sharing a master key), blobs are copied as they are and whatever the
/// destination already holds — a tree included, with everything below it — is skipped. Otherwise
/// each file is re-chunked with the destination's chunker, so the copy deduplicates against the
/// destination's own backups. Every blob read is verified; the snapshot record is written last, after
/// its data is indexed, exactly as a backup commits.
public final class SnapshotCopier {
    /// The store copied from.
    public let source: Store
    /// The store copied into.
    public let destination: Store
    /// True when files are cut again with the destination's chunker.
    public let rechunks: Bool
    /// Reports of the bytes of files copied, against the snapshots' sizes (nil: none).
    public var progress: ProgressSink?
    private let meter = ProgressMeter(action: "copy")

    /// What copying one snapshot did.
    public struct Result: Encodable, Sendable {
        /// The snapshot's id in the source.
        public var source: String
        /// Its id in the destination (nil when it was already there).
        public var copy: String?
        /// Set when the destination already held this snapshot (same time, host and paths).
        public var alreadyThere: String?
        /// Blobs written to the destination.
        public var blobsCopied = 0
        /// Their raw bytes.
        public var bytesCopied: UInt64 = 0
        /// Blobs (and trees) the destination already had.
        public var blobsSkipped = 0
    }

    /// A copier between two open stores; `rechunks` says whether files will be cut again.
    public init(from source: Store, to destination: Store) {
        self.source = source
        self.destination = destination
        let probe = Array("shadowmover copy probe".utf8)
        rechunks =
            !(source.chunker.parameters == destination.chunker.parameters && source.gearTable == destination.gearTable
            && source.cipher.blobID(probe) == destination.cipher.blobID(probe))
    }

    /// Copies each snapshot (oldest first is best: later ones then find their data there).
    public func copy(_ snapshots: [(id: String, record: SnapshotRecord)]) throws -> [Result] {
        let sourceLock = try StoreLock.acquire(source, exclusive: false, purpose: "copy from")
        defer { sourceLock.release() }
        let destinationLock = try StoreLock.acquire(destination, exclusive: false, purpose: "copy to")
        defer { destinationLock.release() }
        let existing = try destination.snapshots().records
        meter.found(bytes: snapshots.reduce(0) { $0 + $1.record.summary.bytesProcessed }, files: snapshots.reduce(0) { $0 + $1.record.summary.files })
        meter.totalKnown()
        meter.start(progress)
        defer { meter.stop() }
        var results: [Result] = []
        for (id, record) in snapshots {
            var result = Result(source: id)
            if let twin = existing.first(where: { $0.record.time == record.time && $0.record.hostname == record.hostname && $0.record.paths == record.paths }) {
                result.alreadyThere = twin.id
                results.append(result)
                continue
            }
            let packs = destination.makePackWriter()
            let saver = ChunkSaver(store: destination, packs: packs, codec: destination.codec)
            do {
                var copied = record
                copied.tree = try copyTree(record.tree, saver: saver, result: &result, depth: 0)
                try saver.finish()
                try packs.commit()
                result.copy = try destination.saveSnapshot(copied)
            } catch {
                packs.cancel()
                throw error
            }
            results.append(result)
        }
        return results
    }

    private func copyTree(_ id: ChunkID, saver: ChunkSaver, result: inout Result, depth: Int) throws -> ChunkID {
        guard depth <= Tree.maximumDepth else { throw StoreError.damagedTree(id: id, reason: "nested deeper than \(Tree.maximumDepth)") }
        if !rechunks && destination.index.contains(id) {
            result.blobsSkipped += 1
            return id
        }
        var nodes = try source.loadTree(id).nodes
        for i in nodes.indices {
            if let sub = nodes[i].subtree { nodes[i].subtree = try copyTree(sub, saver: saver, result: &result, depth: depth + 1) }
            if nodes[i].kind == .file { try copyContent(of: &nodes[i], saver: saver, result: &result) }
        }
        return try saver.save(Tree(nodes: nodes))
    }

    private func copyContent(of node: inout Node, saver: ChunkSaver, result: inout Result) throws {
        defer {
            meter.done(Int(node.size))
            meter.finishedFile()
        }
        let ids = try source.content(of: node)
        if !rechunks {
            for id in ids {
                if destination.index.contains(id) {
                    result.blobsSkipped += 1
                    continue
                }
                try copyBlob(id, saver: saver, result: &result)
            }
            for list in node.contentLists ?? [] where !destination.index.contains(list) {
                try copyBlob(list, saver: saver, result: &result, type: .contentList)
            }
            return
        }
        let stream = ChunkStream(chunker: destination.chunker)
        var content: [ChunkID] = []
        func drain() throws {
            while let chunk = stream.nextChunk() {
                let before = saver.stats.chunksNew
                content.append(try saver.save(chunk, type: .data))
                if saver.stats.chunksNew > before {
                    result.blobsCopied += 1
                    result.bytesCopied += UInt64(chunk.count)
                } else {
                    result.blobsSkipped += 1
                }
            }
        }
        for id in ids {
            let bytes = try source.loadBlob(id, expecting: .data)
            var taken = 0
            while taken < bytes.count {
                taken += bytes.withUnsafeBytes { stream.append(UnsafeRawBufferPointer(rebasing: $0[taken...])) }
                try drain()
            }
        }
        stream.finish()
        try drain()
        try saver.attach(.chunks(content), to: &node)
    }

    private func copyBlob(_ id: ChunkID, saver: ChunkSaver, result: inout Result, type: BlobType = .data) throws {
        let bytes = try source.loadBlob(id, expecting: type)
        let saved = try bytes.withUnsafeBytes { try saver.save($0, type: type) }
        guard saved == id else { throw StoreError.chunkIDKeysDiffer(blob: id, destinationID: saved) }
        result.blobsCopied += 1
        result.bytesCopied += UInt64(bytes.count)
    }
}
