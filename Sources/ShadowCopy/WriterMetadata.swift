import Foundation

/// The Writer Metadata Document: what a writer is and which data it owns, returned at identify.
public struct WriterMetadata: Codable, Sendable, Equatable {
    public var name: String
    /// Fixed for the kind of writer (a UUID string).
    public var classID: String
    /// New for each running instance.
    public var instanceID: String
    public var instanceName: String
    public var usageType: UsageType
    public var sourceType: SourceType
    public var restoreMethod: RestoreMethod
    public var components: [Component]
    /// Files never to back up, whatever the components say.
    public var excludes: [FileDescriptor]

    public enum UsageType: String, Codable, Sendable { case undefined, bootableSystemState, systemService, userData, other }
    public enum SourceType: String, Codable, Sendable { case undefined, transactedDB, nonTransactedDB, other }
    public enum RestoreMethod: String, Codable, Sendable {
        case restoreIfNotThere, restoreIfCanReplace, stopRestoreStart, restoreToAlternateLocation, restoreAtReboot
        case restoreAtRebootIfCannotReplace, custom, restoreStopStart
    }

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
    public enum Kind: String, Codable, Sendable { case database, fileGroup }

    public var logicalPath: String
    public var name: String
    public var type: Kind
    public var selectable: Bool
    public var files: [FileDescriptor]

    public init(logicalPath: String = "", name: String, type: Kind, selectable: Bool = true, files: [FileDescriptor]) {
        self.logicalPath = logicalPath
        self.name = name
        self.type = type
        self.selectable = selectable
        self.files = files
    }

    /// `logicalPath/name`, or just the name at the root.
    public var fullPath: String { logicalPath.isEmpty ? name : "\(logicalPath)/\(name)" }

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
    public var path: String
    public var filespec: String
    public var recursive: Bool
    /// The files come and go with the application's connections (SQLite's -wal, -shm, -journal): one
    /// that vanishes while a live tree is read is left out without a warning.
    public var transient: Bool

    public init(path: String, filespec: String = "*", recursive: Bool = false, transient: Bool = false) {
        self.path = path
        self.filespec = filespec
        self.recursive = recursive
        self.transient = transient
    }

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
    public var backupType = "full"
    public var selectComponents = true
    public var writers: [WriterEntry] = []
    /// Set when the backup completes: when the data was captured.
    public var backupStamp: String?

    public struct WriterEntry: Codable, Sendable {
        public var name: String
        public var classID: String
        public var instanceID: String
        public var instanceName: String
        public var components: [ComponentEntry]
        /// How the writer's components are restored (`restore --component`); absent in older records.
        public var restoreMethod: String?
    }

    public struct ComponentEntry: Codable, Sendable {
        public var logicalPath: String
        public var name: String
        public var type: Component.Kind
        public var selected: Bool
        public var files: [String]
        /// nil until the backup completes.
        public var backupSucceeded: Bool?
        /// What the writer reported at freeze (e.g. a row count), for verification.
        public var freezeInfo: [String: String]?
    }

    public init() {}
}
