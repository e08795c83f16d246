/// The 16 writer states of VSS (`VSS_WRITER_STATE`), with the same numbers, so `shadowmover writers`
/// reads like `vssadmin list writers`.
public enum WriterState: Int, Codable, Sendable, CustomStringConvertible, CaseIterable {
    case unknown = 0
    case stable = 1
    case waitingForFreeze = 2
    case waitingForThaw = 3
    case waitingForPostSnapshot = 4
    case waitingForBackupComplete = 5
    case failedAtIdentify = 6
    case failedAtPrepareBackup = 7
    case failedAtPrepareSnapshot = 8
    case failedAtFreeze = 9
    case failedAtThaw = 10
    case failedAtPostSnapshot = 11
    case failedAtBackupComplete = 12
    case failedAtPreRestore = 13
    case failedAtPostRestore = 14
    case failedAtBackupShutdown = 15

    /// A failed state (6–13), or unknown.
    public var isFailed: Bool { rawValue >= 6 || self == .unknown }

    /// The VSS name (VSS_WS_STABLE, …).
    public var description: String {
        let names = [
            "Unknown", "Stable", "Waiting for freeze", "Waiting for thaw", "Waiting for post-snapshot",
            "Waiting for backup complete", "Failed at identify", "Failed at prepare backup",
            "Failed at prepare snapshot", "Failed at freeze", "Failed at thaw", "Failed at post-snapshot",
            "Failed at backup complete", "Failed at pre-restore", "Failed at post-restore", "Failed at backup shutdown",
        ]
        return "[\(rawValue)] \(names[rawValue])"
    }
}

/// Why a writer failed an event (VSS's writer failure codes).
public enum WriterFailure: String, Codable, Sendable, CustomStringConvertible {
    case retryable
    case nonRetryable
    case timeout
    case inconsistentSnapshot
    case outOfResources
    case notResponding

    /// VSS's advice: retry transient causes, timeouts and resource shortages; not the others.
    public var isRetryable: Bool { self == .retryable || self == .timeout || self == .outOfResources }

    /// The VSS name.
    public var description: String { rawValue }
}

/// A failed writer event: the failure kind and the writer's own words.
public struct WriterError: Error, Sendable, CustomStringConvertible {
    /// The VSS failure code.
    public var failure: WriterFailure
    /// What the writer said.
    public var message: String

    /// A failure of kind `failure`.
    public init(_ failure: WriterFailure, _ message: String) {
        self.failure = failure
        self.message = message
    }

    /// "CODE: message".
    public var description: String { "\(failure): \(message)" }
}

/// The events a writer receives, in VSS order.
public enum WriterEvent: String, Codable, Sendable, CaseIterable {
    case identify
    case prepareBackup = "prepare-backup"
    case prepareSnapshot = "prepare-snapshot"
    case freeze
    case thaw
    case postSnapshot = "post-snapshot"
    case backupComplete = "backup-complete"
    case abort
    /// Restore (`restore --component`): before a component's files are written; a veto stops the restore.
    case preRestore = "pre-restore"
    /// After the files are written (or the restore failed: the event says which).
    case postRestore = "post-restore"

    /// The state a writer enters when it fails this event.
    var failedState: WriterState {
        switch self {
        case .identify: .failedAtIdentify
        case .prepareBackup: .failedAtPrepareBackup
        case .prepareSnapshot: .failedAtPrepareSnapshot
        case .freeze: .failedAtFreeze
        case .thaw: .failedAtThaw
        case .postSnapshot: .failedAtPostSnapshot
        case .backupComplete, .abort: .failedAtBackupComplete
        case .preRestore: .failedAtPreRestore
        case .postRestore: .failedAtPostRestore
        }
    }

    /// The state a writer is in after this event succeeds.
    var nextState: WriterState {
        switch self {
        case .identify, .abort, .preRestore, .postRestore: .stable
        case .prepareBackup, .prepareSnapshot: .waitingForFreeze
        case .freeze: .waitingForThaw
        case .thaw: .waitingForPostSnapshot
        case .postSnapshot: .waitingForBackupComplete
        case .backupComplete: .stable
        }
    }
}
