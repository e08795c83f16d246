import Foundation

/// How long applications were held, from the first freeze sent to the last thaw answered, by phase.
public struct FreezeWindow: Codable, Sendable {
    public struct Phase: Codable, Sendable {
        /// `freeze`, `commit` or `thaw`.
        public var kind: String
        /// The writer (freeze, thaw) or volume (commit).
        public var subject: String
        /// Start, from the first freeze sent, in milliseconds.
        public var startMs: Double
        public var durationMs: Double
    }

    public var totalMs: Double
    public var phases: [Phase]

    public init(totalMs: Double, phases: [Phase]) {
        self.totalMs = totalMs
        self.phases = phases
    }
}

/// A writer as the session saw it, like a line of `vssadmin list writers`.
public struct WriterReport: Codable, Sendable {
    public var label: String
    public var name: String?
    public var instanceID: String?
    public var state: WriterState
    public var selected: Bool
    public var lastError: String?
    public var metadata: WriterMetadata?
}

/// Everything a shadow copy session did, for the snapshot record, the backup summary and `--json`.
public struct SessionReport: Codable, Sendable {
    public var setID: String
    public var writers: [WriterReport] = []
    public var components = BackupComponentsDocument()
    public var shadowCopies: [ShadowCopyProperties] = []
    public var freezeWindow: FreezeWindow?
    public var attempts = 0
    public var warnings: [String] = []
    /// True when every path was read from a shadow copy (nothing live).
    public var pointInTime = false
}

extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}
