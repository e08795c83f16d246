import Foundation

/// What the coordinator tells a writer with each event.
public struct WriterContext: Sendable {
    /// The shadow copy set this session creates.
    public var setID: String
    /// The writer's components selected for this backup (full paths); empty if none are.
    public var selectedComponents: [String]
    /// Mount points of the volumes in the set.
    public var volumes: [String]
    /// Original mount point → shadow copy path, after commit.
    public var shadowCopies: [String: String]
    /// Per selected component: did the backup succeed (backup-complete), did the restore (post-restore).
    public var results: [String: Bool]
    /// Restore events: where the component's files are (being) restored to — the original paths, or an
    /// alternate location that holds them under their original paths.
    public var restoreTarget: String?
    /// The time by which the writer must have answered.
    public var deadline: ContinuousClock.Instant

    /// The context of an event of set `setID`, to be answered by `deadline`.
    public init(setID: String, deadline: ContinuousClock.Instant) {
        self.setID = setID
        self.selectedComponents = []
        self.volumes = []
        self.shadowCopies = [:]
        self.results = [:]
        self.deadline = deadline
    }
}

/// An application that owns data and takes part in shadow copy sessions (VSS's `CVssWriter`).
///
/// The coordinator calls these from its own threads, one event at a time per writer, in VSS order:
/// identify → prepare-backup → prepare-snapshot → freeze → thaw → post-snapshot → backup-complete, or
/// abort after any failure. Each call must return by `context.deadline`; a writer that cannot throws a
/// `WriterError` (a veto). `abort` may come more than once and must undo freeze.
public protocol Writer: AnyObject, Sendable {
    /// Short name for messages, e.g. "sqlite:/var/lib/app.db".
    var label: String { get }

    func identify(_ context: WriterContext) throws -> WriterMetadata
    /// Returns optional details to record (for freeze: in the components' `freezeInfo`).
    func handle(_ event: WriterEvent, _ context: WriterContext) throws -> [String: String]
    /// The session is over (released or aborted): free resources, end processes.
    func shutdown()

    /// Files to read from the live system after post-snapshot, in place of the shadow copy's (a
    /// database's log written up to the end of its backup, after the snapshot). Empty for most writers.
    var filesAfterSnapshot: [String] { get }
}

extension Writer {
    /// None by default.
    public var filesAfterSnapshot: [String] { [] }
}
