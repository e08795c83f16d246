import Foundation

/// The Writer Metadata Document: what a writer is and which data it owns, returned at identify.
public struct WriterMetadata: Codable, Sendable, Equatable {
    /// The writer's name, as `shadowmover writers` lists it.
    public var name: String
    /// Fixed for the kind of writer (a UUID string).
    public var classID: String
    /// New for each running instance.
    public var instanceID: String
    /// A name for this instance (e.g. the database it serves).
    public var instanceName: String
    /// What kind of data it owns (VSS_USAGE_TYPE).
    public var usageType: UsageType
    /// How that data is kept (VSS_SOURCE_TYPE): transacted databases need their logs with them.
    public var sourceType: SourceType
    /// How its components are put back (VSS_RESTOREMETHOD_ENUM; docs/WRITERS.md).
    public var restoreMethod: RestoreMethod
    /// The units of its data a backup can select.
    public var components: [Component]
    /// Files never to back up, whatever the components say.
    public var excludes: [FileDescriptor]

    /// VSS_USAGE_TYPE.
    public enum UsageType: String, Codable, Sendable { case undefined, bootableSystemState, systemService, userData, other }
    /// VSS_SOURCE_TYPE.
    public enum SourceType: String, Codable, Sendable { case undefined, transactedDB, nonTransactedDB, other }
    /// VSS_RESTOREMETHOD_ENUM: how the requester restores the writer's components.
    public enum RestoreMethod: String, Codable, Sendable {
        case restoreIfNotThere, restoreIfCanReplace, stopRestoreStart, restoreToAlternateLocation, restoreAtReboot
        case restoreAtRebootIfCannotReplace, custom, restoreStopStart
    }

    /// A document with defaults for the optional parts (user data, restore if it can replace).
    public init(
        name: String, classID: String, instanceID: String = UUID().uuidString, instanceName: String,
        usageType: UsageType = .userData, sourceType: SourceType = .other, restoreMethod: RestoreMethod = .restoreIfCanReplace,
        components: [Component], excludes: [FileDescriptor] = []
    ) {
        self.name = name
        self.classID = classID
        self.instanceID = instanceID
        self.instanceName = instanceName
        self.usageType = usageType
        self.sourceType = sourceType
        self.restoreMethod = restoreMethod
        self.components = components
        self.excludes = excludes
    }

    enum CodingKeys: String, CodingKey {
        case name, classID = "classId", instanceID = "instanceId", instanceName, usageType, sourceType, restoreMethod, components, excludes
    }

    /// Reads a writer's answer; absent optional keys take their defaults.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        classID = try c.decodeIfPresent(String.self, forKey: .classID) ?? "00000000-0000-0000-0000-000000000000"
        instanceID = try c.decodeIfPresent(String.self, forKey: .instanceID) ?? UUID().uuidString
        instanceName = try c.decodeIfPresent(String.self, forKey: .instanceName) ?? name
        usageType = try c.decodeIfPresent(UsageType.self, forKey: .usageType) ?? .userData
        sourceType = try c.decodeIfPresent(SourceType.self, forKey: .sourceType) ?? .other
        restoreMethod = try c.decodeIfPresent(RestoreMethod.self, forKey: .restoreMethod) ?? .restoreIfCanReplace
        components = try c.decodeIfPresent([Component].self, forKey: .components) ?? []
        excludes = try c.decodeIfPresent([FileDescriptor].self, forKey: .excludes) ?? []
    }
}

/// A unit of a writer's data that a backup can select.
public struct Component: Codable, Sendable, Equatable {
    /// A database (with its logs) or a group of files.
    public enum Kind: String, Codable, Sendable { case database, fileGroup }

    /// The component's place in the writer's hierarchy ("" at the root).
    public var logicalPath: String
    /// Its name, unique under `logicalPath`.
    public var name: String
    /// Whether it is a database or a group of files.
    public var type: Kind
    /// Whether a backup may select it alone.
    public var selectable: Bool
    /// The files it consists of.
    public var files: [FileDescriptor]

    /// A component of `files`.
    public init(logicalPath: String = "", name: String, type: Kind, selectable: Bool = true, files: [FileDescriptor]) {
        self.logicalPath = logicalPath
        self.name = name
        self.type = type
        self.selectable = selectable
        self.files = files
    }

    /// `logicalPath/name`, or just the name at the root.
    public var fullPath: String { logicalPath.isEmpty ? name : "\(logicalPath)/\(name)" }

    /// Reads a component from a writer's answer.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        logicalPath = try c.decodeIfPresent(String.self, forKey: .logicalPath) ?? ""
        name = try c.decode(String.self, forKey: .name)
        type = try c.decodeIfPresent(Kind.self, forKey: .type) ?? .fileGroup
        selectable = try c.decodeIfPresent(Bool.self, forKey: .selectable) ?? true
        files = try c.decodeIfPresent([FileDescriptor].self, forKey: .files) ?? []
    }
}

/// A set of files: a directory, a filespec with `*`/`?` wildcards matched against names in it, and
/// whether subdirectories count. A filespec names files, not a list fixed in advance: it is matched
/// when the shadow copy is taken (inside the freeze), so a file that exists then is captured whatever
/// existed at identify, and one that does not is simply not there.
public struct FileDescriptor: Codable, Sendable, Equatable {
    /// The directory.
    public var path: String
    /// Names in it to take, with `*` and `?` wildcards.
    public var filespec: String
    /// Whether subdirectories count.
    public var recursive: Bool
    /// The files come and go with the application's connections (SQLite's -wal, -shm, -journal): one
    /// that vanishes while a live tree is read is left out without a warning.
    public var transient: Bool

    /// A descriptor of `filespec` in `path`.
    public init(path: String, filespec: String = "*", recursive: Bool = false, transient: Bool = false) {
        self.path = path
        self.filespec = filespec
        self.recursive = recursive
        self.transient = transient
    }

    /// Reads a descriptor from a writer's answer.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        path = try c.decode(String.self, forKey: .path)
        filespec = try c.decodeIfPresent(String.self, forKey: .filespec) ?? "*"
        recursive = try c.decodeIfPresent(Bool.self, forKey: .recursive) ?? false
        transient = try c.decodeIfPresent(Bool.self, forKey: .transient) ?? false
    }
}

/// The Backup Components Document: what this backup selected and how each component fared. Kept in
/// the snapshot record.
public struct BackupComponentsDocument: Codable, Sendable {
    /// Always "full": ShadowMover's incremental is the files cache, not the writer's.
    public var backupType = "full"
    /// Components are selected (VSS's bSelectComponents).
    public var selectComponents = true
    /// The writers that took part, with their components.
    public var writers: [WriterEntry] = []
    /// Set when the backup completes: when the data was captured.
    public var backupStamp: String?

    /// One writer as it took part.
    public struct WriterEntry: Codable, Sendable {
        /// Its name.
        public var name: String
        /// Its class (fixed for the kind of writer).
        public var classID: String
        /// The instance that ran.
        public var instanceID: String
        /// The instance's name.
        public var instanceName: String
        /// Its components, selected or not.
        public var components: [ComponentEntry]
        /// How the writer's components are restored (`restore --component`); absent in older records.
        public var restoreMethod: String?
    }

    /// One component as it was backed up.
    public struct ComponentEntry: Codable, Sendable {
        /// Its place in the writer's hierarchy.
        public var logicalPath: String
        /// Its name.
        public var name: String
        /// Database or file group.
        public var type: Component.Kind
        /// Whether this backup selected it.
        public var selected: Bool
        /// Its files as they were at identify.
        public var files: [String]
        /// nil until the backup completes.
        public var backupSucceeded: Bool?
        /// What the writer reported at freeze (e.g. a row count), for verification.
        public var freezeInfo: [String: String]?
    }

    /// An empty document.
    public init() {}
}
