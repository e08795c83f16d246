import DurableFile
import Foundation
import JSONFormat

/// Records of the shadow copies that exist on this host (one JSON file each under
/// `<state dir>/shadows/`), written *before* a shadow copy is created and removed after it is deleted.
/// A record whose owner process is gone and that was not kept marks an orphan left by a killed agent.
public struct ShadowRegistry: Sendable {
    /// Where the records are.
    public let directory: String

    /// A shadow copy that exists, and who made it.
    public struct Record: Codable, Sendable {
        /// What it is.
        public var properties: ShadowCopyProperties
        /// The agent that made it.
        public var ownerPID: Int32
        /// Kept after the backup (`--keep`).
        public var keep: Bool
        /// `creating` until the commit returned, then `created`.
        public var state: String

        /// Not kept, and its agent is no longer running.
        public var isOrphan: Bool { !keep && kill(ownerPID, 0) != 0 && errno == ESRCH }
    }

    /// The registry in `paths.shadowRecords`.
    public init(paths: CoordinatorPaths) { directory = paths.shadowRecords }

    func save(_ record: Record) throws {
        let data = try JSONFormat.encoder(pretty: true).encode(record)
        try DurableFile.write(Array(data), to: "\(directory)/\(record.properties.snapshotID).json")
    }

    func remove(_ snapshotID: String) { unlink("\(directory)/\(snapshotID).json") }

    /// Every record that can be read.
    public func list() -> [Record] {
        let decoder = JSONFormat.decoder()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".json") }.sorted().compactMap { name in
            guard let data = FileManager.default.contents(atPath: "\(directory)/\(name)") else { return nil }
            return try? decoder.decode(Record.self, from: data)
        }
    }

    /// Deletes a shadow copy and its record.
    public func delete(_ record: Record) throws {
        try Providers.make(record.properties.provider).delete(record.properties)
        remove(record.properties.snapshotID)
    }

    /// Finds a record by snapshot id prefix.
    public func find(_ prefix: String) throws -> Record {
        let matches = list().filter { $0.properties.snapshotID.hasPrefix(prefix) }
        guard matches.count == 1 else { throw ShadowCopyError.noSuchShadow(prefix) }
        return matches[0]
    }
}
