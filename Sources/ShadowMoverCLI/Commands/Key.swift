import ArgumentParser
import ChunkStore
import Foundation

struct Key: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage an encrypted store's keys: passwords and key files that open it.",
        discussion: """
            Each key slot wraps the store's one master key, so adding or removing a slot re-encrypts nothing. \
            Open the store as usual (--password-file, $SHADOWMOVER_PASSWORD, $SHADOWMOVER_PASSWORD_COMMAND, \
            --key-file, or the prompt); give the new password with --new-password-file or \
            $SHADOWMOVER_NEW_PASSWORD (or at the prompt, twice), or a new key file with --new-key-file.
            """,
        subcommands: [KeyList.self, KeyAdd.self, KeyRemove.self, KeyPasswd.self])
}

/// The secret a new key slot is made for.
struct NewKeyOptions: ParsableArguments {
    @Option(help: ArgumentHelp("File whose first line is the new password.", valueName: "file")) var newPasswordFile: String?
    @Option(help: ArgumentHelp("Key file for the new slot (created if it does not exist).", valueName: "file")) var newKeyFile: String?
    @Option(help: "Memory scrypt uses for a new password's slot, in MiB.") var kdfMemory = 64

    func secret(store: String, allowEmpty: Bool) throws -> StoreSecret {
        guard kdfMemory >= 1 && kdfMemory <= 1024 else { throw ValidationError("--kdf-memory takes 1 to 1024 MiB") }
        if newPasswordFile != nil && newKeyFile != nil { throw ValidationError("give --new-password-file or --new-key-file, not both") }
        var env: [String: String] = [:]
        if let p = ProcessInfo.processInfo.environment["SHADOWMOVER_NEW_PASSWORD"] { env["SHADOWMOVER_PASSWORD"] = p }
        let source = SecretSource(keyFile: newKeyFile, passwordFile: newPasswordFile, allowEmptyPassword: allowEmpty, environment: env)
        do {
            return try source.secret(store: store, confirm: true)
        } catch KeyError.noSecret {
            throw ValidationError(
                "no new password given: pass --new-password-file FILE or --new-key-file FILE, set SHADOWMOVER_NEW_PASSWORD, or run on a terminal to be asked")
        }
    }
}

struct KeyList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the store's key slots.")
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let store = try storeOptions.open()
        let (slots, current) = try store.keySlots()
        struct Item: Encodable { var id: String; var kind: String?; var kdf: String?; var created: String?; var current: Bool; var damaged: Bool }
        let items = slots.map { s in
            Item(
                id: s.id, kind: s.slot?.kind.rawValue,
                kdf: s.slot.map { k in k.kdf.name == "scrypt" ? "scrypt N=\(k.kdf.n ?? 0) r=\(k.kdf.r ?? 0) p=\(k.kdf.p ?? 0)" : k.kdf.name },
                created: s.slot.map { Output.time($0.created) }, current: s.id == current, damaged: s.slot == nil)
        }
        if output.json { return try Output.json(items) }
        guard store.cipher.isEncrypted else { return Output.line("the store at \(store.location) is not encrypted: it has no keys") }
        Output.table(
            ["", "slot", "kind", "kdf", "created"],
            items.map {
                [$0.current ? "*" : "", String($0.id.prefix(16)), $0.kind ?? "damaged", $0.kdf ?? "", $0.created ?? ""]
            })
    }
}

struct KeyAdd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Add a key slot for another password or key file.")
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var newKey: NewKeyOptions

    func run() throws {
        let store = try storeOptions.open()
        let id = try store.addKey(
            try newKey.secret(store: store.location, allowEmpty: storeOptions.insecureEmptyPassword), kdf: .scrypt(memoryMiB: newKey.kdfMemory))
        Output.line("added key slot \(id.prefix(16))\(newKey.newKeyFile.map { " (key file \($0))" } ?? "")")
    }
}

struct KeyRemove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove", abstract: "Remove a key slot (not the last one, nor the one used to open the store).")
    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: "The slot's id, or its first digits (see `key list`).") var slot: String

    func run() throws {
        let store = try storeOptions.open()
        let id = try store.removeKey(slot)
        Output.line("removed key slot \(id.prefix(16))")
    }
}

struct KeyPasswd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passwd", abstract: "Change the password (or key file) that opened the store: a new slot replaces it.")
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var newKey: NewKeyOptions

    func run() throws {
        let store = try storeOptions.open()
        let id = try store.changeKey(
            to: try newKey.secret(store: store.location, allowEmpty: storeOptions.insecureEmptyPassword), kdf: .scrypt(memoryMiB: newKey.kdfMemory))
        Output.line("changed the key: new slot \(id.prefix(16)) replaces the one used to open the store")
    }
}
