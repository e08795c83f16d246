import Foundation

/// How long applications were held, from the first freeze sent to the last thaw answered, by phase.
public struct FreezeWindow: Codable, Sendable {
    /// One timed step of the freeze window.
    public struct Phase: Codable, Sendable {
        /// `freeze`, `commit` or `thaw`.
        public var kind: String
        /// The writer (freeze, thaw) or volume (commit).
        public var subject: String
        /// Start, from the first freeze sent, in milliseconds.
        public var startMs: Double
        /// How long it took, in milliseconds.
        public var durationMs: Double
    }

    /// From the first freeze sent to the last thaw answered, in milliseconds: the applications' downtime.
    public var totalMs: Double
    /// The steps, in the order they started.
    public var phases: [Phase]

    /// A window of `totalMs` made of `phases`.
    public init(totalMs: Double, phases: [Phase]) {
        self.totalMs = totalMs
        self.phases = phases
    }
}

/// A writer as the session saw it, like a line of `vssadmin list writers`.
public struct WriterReport: Codable, Sendable {
    /// How the writer was named on the command line or in the job (program, database path).
    public var label: String
    /// The name its metadata gives.
    public var name: String?
    /// Its instance id.
    public var instanceID: String?
    /// Its VSS state when the session ended.
    public var state: WriterState
    /// Whether the backup selected it (or a component of it).
    public var selected: Bool
    /// Its last failure, with the VSS failure code.
    public var lastError: String?
    /// Its Writer Metadata Document, when identify answered.
    public var metadata: WriterMetadata?
}

/// Everything a shadow copy session did, for the snapshot record, the backup summary and `--json`.
public struct SessionReport: Codable, Sendable {
    /// The shadow copy set's id.
    public var setID: String
    /// Every writer found, selected or not.
    public var writers: [WriterReport] = []
    /// The Backup Components Document.
    public var components = BackupComponentsDocument()
    /// One shadow copy per volume of the set.
    public var shadowCopies: [ShadowCopyProperties] = []
    /// How long the writers were held, by phase.
    public var freezeWindow: FreezeWindow?
    /// How many attempts the set took.
    public var attempts = 0
    /// What went wrong short of failing (orphans removed, writers not selected that failed).
    public var warnings: [String] = []
    /// True when every path was read from a shadow copy (nothing live).
    public var pointInTime = false
}

extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}
