import Chunking
import Testing

/// Deterministic corpora shared with tools/fastcdc_reference.py.
enum Corpus {
    case random, text

    static func xorshift(seed: UInt64, count: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count + 8)
        var x = seed
        while out.count < count {
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
        }
        return Array(out[..<count])
    }

    static func text(seed: UInt64, count: Int) -> [UInt8] {
        let words = [
            "shadow", "mover", "chunk", "store", "freeze", "thaw", "writer", "volume", "snapshot", "pack",
            "index", "tree", "\n", "  ", "0123456789", "backup",
        ].map { Array($0.utf8) }
        let rnd = xorshift(seed: seed, count: count)
        var out = [UInt8]()
        var i = 0
        while out.count < count {
            out.append(contentsOf: words[Int(rnd[i % rnd.count] & 15)])
            i += 1
        }
        return Array(out[..<count])
    }

    func bytes(seed: UInt64, count: Int) -> [UInt8] {
        switch self {
        case .random: Corpus.xorshift(seed: seed, count: count)
        case .text: Corpus.text(seed: seed, count: count)
        }
    }
}

struct Vector: CustomStringConvertible {
    var name: String
    var corpus: Corpus
    var seed: UInt64
    var size: Int
    var min: Int, avg: Int, max: Int, level: Int
    var lengths: [Int]
    var description: String { name }
}

/// Cut points computed by tools/fastcdc_reference.py --vectors (an independent transcription of the
/// FastCDC 2020 reference, fastcdc-rs v2020::cut).
let referenceVectors: [Vector] = [
    Vector(
        name: "random 16K level 1", corpus: .random, seed: 1, size: 1048576, min: 4096, avg: 16384, max: 65536, level: 1,
        lengths: [
            26453, 10919, 33478, 15116, 7441, 17768, 20253, 17187, 22709, 23991, 31201, 17155, 29235, 18614, 29705, 20970, 16946, 13403, 14951, 17209, 22481,
            11136, 28467, 25851, 7560, 44738, 8768, 13260, 21644, 13726, 12988, 17415, 36393, 5096, 13194, 16545, 24094, 43887, 18630, 16440, 18088, 31762,
            21532, 20525, 4980, 10568, 6052, 39926, 21320, 17294, 22465, 8418, 18629,
        ]),
    Vector(
        name: "random 16K level 0", corpus: .random, seed: 2, size: 1048576, min: 4096, avg: 16384, max: 65536, level: 0,
        lengths: [
            24717, 4372, 60465, 11928, 17405, 16115, 10607, 16034, 7722, 4315, 17181, 40206, 56734, 9668, 14812, 5558, 30166, 22168, 20697, 35955, 14601, 22774,
            64128, 11452, 6682, 44529, 6789, 11992, 11441, 7675, 12626, 4890, 18927, 28712, 11601, 9278, 22689, 8628, 9328, 30981, 4863, 19028, 41935, 8028,
            10110, 5762, 5343, 12870, 5843, 11873, 19765, 9276, 28541, 47586, 6203, 22654, 2348,
        ]),
    Vector(
        name: "random 16K level 3", corpus: .random, seed: 3, size: 1048576, min: 8192, avg: 16384, max: 65535, level: 3,
        lengths: [
            24185, 25366, 17272, 19491, 16580, 16494, 10014, 18177, 17725, 18275, 20567, 19007, 19172, 19606, 19723, 19917, 16598, 8249, 18127, 16493, 18298,
            17277, 20799, 20534, 18526, 17310, 17897, 16936, 19969, 16588, 16794, 21206, 21285, 16945, 16859, 17955, 19134, 19139, 21811, 15227, 17250, 17570,
            17452, 16542, 16529, 12716, 16622, 26474, 18560, 19080, 18253, 18325, 8363, 17929, 18934, 11747, 17468, 19134, 8101,
        ]),
    Vector(
        name: "text 8K level 2", corpus: .text, seed: 4, size: 524288, min: 2048, avg: 8192, max: 32768, level: 2,
        lengths: [
            6620, 8908, 9326, 10718, 12456, 8884, 9692, 3586, 9323, 4134, 6696, 9912, 9115, 10282, 8291, 11737, 11473, 8745, 8234, 10973, 8899, 10109, 8547,
            10038, 9649, 8890, 9989, 12245, 16219, 17513, 9950, 8789, 2542, 9940, 11888, 8686, 9326, 8703, 7311, 8373, 8479, 9483, 12548, 8450, 8949, 8388,
            3738, 4397, 8845, 8471, 7995, 8638, 8988, 2636, 9053, 9969, 2706, 9829, 6015,
        ]),
    Vector(
        name: "random 64K level 2", corpus: .random, seed: 5, size: 2097152, min: 16384, avg: 65536, max: 262144, level: 2,
        lengths: [
            82882, 118905, 70567, 71163, 69568, 33382, 92842, 66333, 73553, 74953, 91737, 29865, 69356, 87172, 21536, 32641, 67788, 73767, 96525, 66230, 99071,
            22036, 61396, 76890, 25147, 106645, 65789, 52364, 39122, 45335, 77804, 34788,
        ]),
    Vector(
        name: "random 1M level 2 (store default)", corpus: .random, seed: 6, size: 12582912, min: 262144, avg: 1048576, max: 4194304, level: 2,
        lengths: [1531459, 266192, 1159618, 1209988, 1099999, 2101657, 1056761, 1101835, 1284498, 1210289, 560616]),
]
