import Foundation
import JSONFormat

/// A lock on the store (`locks/<id>`): backups take shared locks, prune and forget an exclusive one.
/// A lock records host, pid and a heartbeat refreshed while it is held. A lock whose process is gone
/// (same host) or whose heartbeat is older than `staleAfter` is stale: it is reported, never ignored;
/// `shadowmover unlock` removes it.
public final class StoreLock: @unchecked Sendable {  // heartbeat state guarded by `lock`
    /// What a lock object says.
    public struct Record: Codable, Sendable {
        /// Exclusive (prune, forget, tag) or shared (backup, restore, mount, copy).
        public var exclusive: Bool
        /// The host holding it.
        public var host: String
        /// The process holding it.
        public var pid: Int32
        /// When it was taken.
        public var created: Date
        /// When its holder last said it is alive.
        public var heartbeat: Date
        /// What the holder is doing ("backup", "prune", …).
        public var purpose: String

        /// Taken on this host by a process that no longer exists. (A pid reused since then keeps the lock
        /// alive, which errs on the safe side.)
        public var isProvablyDead: Bool {
            host == ProcessInfo.processInfo.hostName && kill(pid, 0) != 0 && errno == ESRCH
        }

        /// Same host and the process is gone, or no heartbeat for `staleAfter`.
        public func isStale(staleAfter: TimeInterval) -> Bool {
            if host == ProcessInfo.processInfo.hostName && kill(pid, 0) != 0 && errno == ESRCH { return true }
            return Date().timeIntervalSince(heartbeat) > staleAfter
        }
    }

    /// A heartbeat older than this marks a lock stale (the holder refreshes every `heartbeatInterval`).
    public static let staleAfter: TimeInterval = 30 * 60
    static let heartbeatInterval: TimeInterval = 60
    /// A lock record is a few hundred bytes; a longer file is not read (it counts as unreadable).
    static let maximumRecordLength = 64 << 10

    let store: Store
    let name: String
    private var record: Record
    private let lock = NSLock()
    private var released = false

    private init(store: Store, name: String, record: Record) {
        self.store = store
        self.name = name
        self.record = record
    }

    /// Takes a lock, or fails naming the holder (and `unlock` for a stale one).
    public static func acquire(_ store: Store, exclusive: Bool, purpose: String) throws -> StoreLock {
        try checkConflicts(store, exclusive: exclusive, ignoring: nil)
        let now = Date()
        let record = Record(exclusive: exclusive, host: ProcessInfo.processInfo.hostName, pid: getpid(), created: now, heartbeat: now, purpose: purpose)
        let name = ChunkID.random().hex
        try write(record, name: name, in: store)
        // Two agents may have checked at once: look again now that ours is visible.
        do { try checkConflicts(store, exclusive: exclusive, ignoring: name) } catch {
            try? store.backend.delete(ObjectKey.lock(name))
            throw error
        }
        let held = StoreLock(store: store, name: name, record: record)
        held.startHeartbeat()
        return held
    }

    /// Stops the heartbeat and removes the lock (once; also on deinit).
    public func release() {
        let done: Bool = lock.withLock {
            defer { released = true }
            return released
        }
        if !done { try? store.backend.delete(ObjectKey.lock(name)) }
    }

    deinit { release() }

    private func startHeartbeat() {
        Thread { [weak self] in
            while true {
                Thread.sleep(forTimeInterval: Self.heartbeatInterval)
                guard let self else { return }
                let stop: Bool = self.lock.withLock {
                    if self.released { return true }
                    self.record.heartbeat = Date()
                    return false
                }
                if stop { return }
                try? Self.write(self.record, name: self.name, in: self.store)
            }
        }.start()
    }

    static func write(_ record: Record, name: String, in store: Store) throws {
        try store.writeObject(ObjectKey.lock(name), Array(try JSONFormat.encoder().encode(record)), kind: .lock)
    }

    /// Every lock file and its record (nil for one that cannot be read).
    public static func list(_ store: Store) -> [(name: String, record: Record?)] {
        ((try? store.backend.names(ObjectKey.locks)) ?? []).compactMap { name in
            let bytes: [UInt8]?
            do { bytes = try store.readObject(ObjectKey.lock(name), limit: Self.maximumRecordLength, kind: .lock) } catch { return (name, nil) }
            guard let bytes else { return nil }  // released since the listing
            return (name, try? JSONFormat.decoder().decode(Record.self, from: Data(bytes)))
        }
    }

    /// Removes the lock `name` (`unlock`: a stale one, or every one with `--all`).
    public static func remove(_ name: String, from store: Store) throws {
        try store.backend.delete(ObjectKey.lock(name))
    }

    /// Throws what `acquire` would, without taking a lock.
    public static func checkAvailable(_ store: Store, exclusive: Bool) throws {
        try checkConflicts(store, exclusive: exclusive, ignoring: nil)
    }

    static func checkConflicts(_ store: Store, exclusive: Bool, ignoring own: String?) throws {
        for (name, record) in list(store) where name != own {
            guard let record else {
                throw StoreError.locked("the store has an unreadable lock \(name): remove it with `shadowmover unlock --all` if no backup or prune is running")
            }
            guard exclusive || record.exclusive else { continue }
            let who = "pid \(record.pid) on \(record.host) (\(record.purpose), since \(Timestamp(record.created).iso8601))"
            if record.isProvablyDead {
                // Its process is gone from this very host: nothing can still be using it (restic does the same).
                try? remove(name, from: store)
                FileHandle.standardError.write(Data("removed the lock of \(who): that process no longer exists\n".utf8))
                continue
            }
            if record.isStale(staleAfter: staleAfter) {
                throw StoreError.locked("the store has a stale lock held by \(who): that process is gone or silent; remove the lock with `shadowmover unlock`")
            }
            throw StoreError.locked("the store is locked by \(who): wait for it to finish")
        }
    }
}
