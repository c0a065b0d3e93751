namespace Adaptive.ModelServer.Protocol;

/// <summary>The tensor element types this server speaks, named as the Open Inference Protocol names them.</summary>
public enum TensorDataType { Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Bf16, Fp32, Fp64, Bytes }

/// <summary>
/// Names, sizes and arrays of the element types. Each type's elements live in an array of a primitive .NET
/// type of the same size, so that the bytes are what ONNX Runtime and the binary extension carry:
/// bool, byte, ushort, uint, ulong, sbyte, short, int, long, float, double; FP16 and BF16 as their 16-bit
/// patterns in ushort arrays. BYTES elements (ONNX strings) have no fixed size: each is a byte[] of its own,
/// in a byte[][].
/// </summary>
public static class TensorDataTypes
{
    public static string ToProtocolName(this TensorDataType type) => type switch
    {
        TensorDataType.Bool => "BOOL",
        TensorDataType.Uint8 => "UINT8",
        TensorDataType.Uint16 => "UINT16",
        TensorDataType.Uint32 => "UINT32",
        TensorDataType.Uint64 => "UINT64",
        TensorDataType.Int8 => "INT8",
        TensorDataType.Int16 => "INT16",
        TensorDataType.Int32 => "INT32",
        TensorDataType.Int64 => "INT64",
        TensorDataType.Fp16 => "FP16",
        TensorDataType.Bf16 => "BF16",
        TensorDataType.Fp32 => "FP32",
        TensorDataType.Fp64 => "FP64",
        TensorDataType.Bytes => "BYTES",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    public static TensorDataType? FromProtocolName(string name) =>
        Enum.GetValues<TensorDataType>().Select(t => (TensorDataType?)t).FirstOrDefault(t => t!.Value.ToProtocolName() == name);

    /// <summary>Whether every element has the same size: all types but BYTES.</summary>
    public static bool HasFixedSize(this TensorDataType type) => type != TensorDataType.Bytes;

    /// <summary>The bytes of one element; BYTES elements have none fixed.</summary>
    public static int ElementSize(this TensorDataType type) => type switch
    {
        TensorDataType.Bool or TensorDataType.Uint8 or TensorDataType.Int8 => 1,
        TensorDataType.Uint16 or TensorDataType.Int16 or TensorDataType.Fp16 or TensorDataType.Bf16 => 2,
        TensorDataType.Uint32 or TensorDataType.Int32 or TensorDataType.Fp32 => 4,
        TensorDataType.Uint64 or TensorDataType.Int64 or TensorDataType.Fp64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "BYTES elements have no fixed size"),
    };

    public const string Supported = "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64, BYTES";

    /// <summary>
    /// An array of <paramref name="length"/> elements, not zeroed: every caller writes all of them before
    /// use, and zeroing a 600 KB image costs time.
    /// </summary>
    public static Array NewArray(this TensorDataType type, long length)
    {
        int count = checked((int)length);
        return type switch
        {
            TensorDataType.Bool => GC.AllocateUninitializedArray<bool>(count),
            TensorDataType.Uint8 => GC.AllocateUninitializedArray<byte>(count),
            TensorDataType.Uint16 or TensorDataType.Fp16 or TensorDataType.Bf16 => GC.AllocateUninitializedArray<ushort>(count),
            TensorDataType.Uint32 => GC.AllocateUninitializedArray<uint>(count),
            TensorDataType.Uint64 => GC.AllocateUninitializedArray<ulong>(count),
            TensorDataType.Int8 => GC.AllocateUninitializedArray<sbyte>(count),
            TensorDataType.Int16 => GC.AllocateUninitializedArray<short>(count),
            TensorDataType.Int32 => GC.AllocateUninitializedArray<int>(count),
            TensorDataType.Int64 => GC.AllocateUninitializedArray<long>(count),
            TensorDataType.Fp32 => GC.AllocateUninitializedArray<float>(count),
            TensorDataType.Fp64 => GC.AllocateUninitializedArray<double>(count),
            TensorDataType.Bytes => new byte[count][],
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
        };
    }

    /// <summary>A float as FP16's bits (IEEE binary16, round to nearest); null when it does not fit.</summary>
    public static ushort? ToFp16(float value)
    {
        var half = (Half)value;
        return Half.IsFinite(half) ? BitConverter.HalfToUInt16Bits(half) : null;
    }

    public static float FromFp16(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>A float as BF16's bits (the top half of its FP32 bits, rounded to nearest even); null when it does not fit.</summary>
    public static ushort? ToBf16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        uint rounded = bits + 0x7FFF + ((bits >> 16) & 1);
        ushort result = (ushort)(rounded >> 16);
        return float.IsFinite(FromBf16(result)) ? result : null;
    }

    public static float FromBf16(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
}

/// <summary>
/// BYTES tensors in the binary data extension: each element is its length as 4 bytes, little-endian, then
/// its bytes, one after another.
/// </summary>
public static class BytesElements
{
    public static long EncodedLength(byte[][] elements) => elements.Sum(e => 4L + e.Length);

    public static void Encode(byte[][] elements, Span<byte> destination)
    {
        int at = 0;
        foreach (var element in elements)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(destination[at..], (uint)element.Length);
            element.CopyTo(destination[(at + 4)..]);
            at += 4 + element.Length;
        }
    }

    /// <summary>Fills <paramref name="elements"/> from <paramref name="raw"/>, which must hold exactly that many; throws a 400 otherwise.</summary>
    public static void Decode(ReadOnlySpan<byte> raw, byte[][] elements, string input)
    {
        int at = 0;
        for (int i = 0; i < elements.Length; i++)
        {
            if (raw.Length - at < 4) throw Bad($"input '{input}': its binary data ends before element {i} of {elements.Length}");
            uint length = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(raw[at..]);
            if (length > raw.Length - at - 4) throw Bad($"input '{input}': element {i} claims {length} bytes, more than its binary data has left");
            elements[i] = raw.Slice(at + 4, (int)length).ToArray();
            at += 4 + (int)length;
        }
        if (at != raw.Length) throw Bad($"input '{input}': {raw.Length - at} bytes of binary data follow its {elements.Length} elements");
    }

    static ProtocolException Bad(string message) => ProtocolException.Invalid(message);
}
