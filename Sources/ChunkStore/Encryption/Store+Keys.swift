import Crypto
import Foundation
import JSONFormat

/// Key slots (docs/FORMAT.md, "Key slots"): `keys/<slot id>`, each the master key wrapped by one
/// password or key file. Any slot opens the store; slots are added and removed without re-encrypting
/// anything.
extension Store {
    /// Opens the master key with `secret`, trying every slot of its kind (passwords through scrypt,
    /// so each try costs its memory and time). Which slot failed is never said.
    static func unlock(backend: StorageBackend, storeID: String, secret: StoreSecret) throws -> (master: SymmetricKey, slot: String) {
        let slots = try readSlots(backend)
        let usable = slots.compactMap { s in s.slot.map { (s.id, $0) } }
        guard !usable.isEmpty else { throw KeyError.noSlots(store: backend.location, damaged: slots.compactMap(\.problem)) }
        for (id, slot) in usable where slot.kind == secret.kind {
            if let master = try slot.unwrap(secret: secret, storeID: storeID, slotID: id) { return (master, id) }
        }
        switch secret {
        case .password: throw KeyError.wrongPassword(store: backend.location)
        case .keyFile(let path):
            let file = try KeyFile.load(path: path)
            guard file.storeID == storeID else { throw KeyError.keyFileOfAnotherStore(path: path, belongsTo: file.storeID, store: storeID) }
            throw KeyError.keyFileOpensNoSlot(path: path, store: backend.location)
        }
    }

    /// Every object under `keys/`, decoded where it can be.
    static func readSlots(_ backend: StorageBackend) throws -> [(id: String, slot: KeySlot?, problem: String?)] {
        try backend.names(ObjectKey.keys).sorted().map { id in
            do {
                guard let bytes = try backend.get(ObjectKey.key(id), limit: KeySlot.maximumLength) else { return (id, nil, "\(id.prefix(8)) vanished") }
                return (id, try JSONFormat.decoder().decode(KeySlot.self, from: Data(bytes)), nil)
            } catch {
                return (id, nil, "\(id.prefix(8)): \(error)")
            }
        }
    }

    /// The store's key slots (an unencrypted store has none), and which one opened it.
    public func keySlots() throws -> (slots: [(id: String, slot: KeySlot?)], current: String?) {
        (try Self.readSlots(backend).map { ($0.id, $0.slot) }, unlocked?.slot)
    }

    /// Adds a key slot opened by `secret` (a key file is created when it does not exist).
    /// - Returns: the new slot's id.
    @discardableResult
    public func addKey(_ secret: StoreSecret, kdf: KeySlot.KDF? = nil) throws -> String {
        guard let unlocked else { throw StoreError.notEncrypted(location: location) }
        let id = ChunkID.random().hex
        let kdf = secret.kind == .password ? kdf ?? .scrypt() : .hkdf()
        let slot = try KeySlot.make(master: unlocked.master, secret: secret, storeID: config.id, slotID: id, kdf: kdf)
        try backend.put(ObjectKey.key(id), Array(try JSONFormat.encoder().encode(slot)))
        return id
    }

    /// Removes the key slot whose id starts with `prefix`. Refuses the last readable slot, and the
    /// slot this store was opened with (so nobody removes the key they hold by mistake).
    /// - Returns: the removed slot's id.
    @discardableResult
    public func removeKey(_ prefix: String) throws -> String {
        let slots = try Self.readSlots(backend)
        let matches = slots.filter { $0.id.hasPrefix(prefix.lowercased()) && !prefix.isEmpty }
        guard matches.count == 1, let target = matches.first else {
            if matches.count > 1 { throw StoreError.ambiguousKeySlot(prefix) }
            throw KeyError.noSuchSlot(prefix)
        }
        guard slots.contains(where: { $0.slot != nil && $0.id != target.id }) else { throw KeyError.lastSlot(target.id) }
        guard target.id != unlocked?.slot else { throw KeyError.slotInUse(target.id) }
        try backend.delete(ObjectKey.key(target.id))
        return target.id
    }

    /// Replaces the slot this store was opened with by a new one opened by `secret`: the new slot is
    /// written before the old one is removed, so an interruption leaves both.
    /// - Returns: the new slot's id.
    @discardableResult
    public func changeKey(to secret: StoreSecret, kdf: KeySlot.KDF? = nil) throws -> String {
        let id = try addKey(secret, kdf: kdf)
        if let old = unlocked?.slot { try backend.delete(ObjectKey.key(old)) }
        return id
    }
}
