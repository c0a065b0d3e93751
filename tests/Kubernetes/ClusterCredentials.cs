using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using k8s;

namespace Adaptive.Tests.Kubernetes;

/// <summary>
/// The API server double's public key infrastructure and credentials, as a cluster's are: a CA of its own
/// that signs the server's certificate (for 127.0.0.1) and a client certificate, and a bearer token.
/// It writes kubeconfig files and a service-account folder for clients, as a cluster's installer would.
/// </summary>
public sealed class ClusterCredentials
{
    public X509Certificate2 Authority { get; }
    public X509Certificate2 ServerCertificate { get; }
    public X509Certificate2 ClientCertificate { get; }
    public string Token { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));

    /// <summary>The user a client certificate names (its subject's common name), as the API server reads it.</summary>
    public const string ClientUser = "adaptive-operator";

    public ClusterCredentials()
    {
        using var authorityKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var authorityRequest = new CertificateRequest("CN=adaptive-test-ca", authorityKey, HashAlgorithmName.SHA256);
        authorityRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        authorityRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        var now = DateTimeOffset.UtcNow;
        Authority = authorityRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(1));

        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(System.Net.IPAddress.Loopback);
        names.AddDnsName("localhost");
        ServerCertificate = Issue("CN=kube-apiserver", ServerAuthentication, names.Build());
        ClientCertificate = Issue($"CN={ClientUser}, O=adaptive", ClientAuthentication, null);
    }

    X509Certificate2 Issue(string subject, string usage, X509Extension? alternativeNames)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], false));
        if (alternativeNames is not null) request.CertificateExtensions.Add(alternativeNames);
        var serial = RandomNumberGenerator.GetBytes(12);
        serial[0] &= 0x7f;
        using var signed = request.Create(Authority, Authority.NotBefore, Authority.NotAfter, serial);
        using var withKey = signed.CopyWithPrivateKey(key);
        // Through PKCS#12 so that the key is usable by TLS on every platform, not only in memory.
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    public const string ServerAuthentication = "1.3.6.1.5.5.7.3.1";
    public const string ClientAuthentication = "1.3.6.1.5.5.7.3.2";

    /// <summary>Whether this cluster's CA issued <paramref name="certificate"/> for <paramref name="usage"/> (server or client authentication).</summary>
    public bool Issued(X509Certificate2 certificate, string usage)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(Authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid(usage));
        return chain.Build(certificate);
    }

    public enum Login
    {
        /// <summary>The cluster's bearer token in the kubeconfig.</summary>
        Token,
        /// <summary>The client certificate and its key in the kubeconfig.</summary>
        ClientCertificate,
        /// <summary>A kubeconfig whose exec plugin (a shell script) prints the token as an ExecCredential.</summary>
        ExecPlugin,
    }

    /// <summary>Writes a kubeconfig for <paramref name="server"/> (CA data and the chosen login) to <paramref name="path"/>.</summary>
    public void WriteKubeconfig(string path, Uri server, Login login, string @namespace = "default")
    {
        string user = login switch
        {
            Login.Token => $"    token: {Token}",
            Login.ClientCertificate => $"    client-certificate-data: {Base64(ClientCertificate.ExportCertificatePem())}\n"
                                       + $"    client-key-data: {Base64(ClientCertificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem())}",
            Login.ExecPlugin => ExecPlugin(Path.GetDirectoryName(Path.GetFullPath(path))!),
            _ => throw new ArgumentOutOfRangeException(nameof(login)),
        };
        File.WriteAllText(path, $"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: double
              cluster:
                server: {server.ToString().TrimEnd('/')}
                certificate-authority-data: {Base64(Authority.ExportCertificatePem())}
            users:
            - name: tester
              user:
            {user}
            contexts:
            - name: double
              context:
                cluster: double
                user: tester
                namespace: {@namespace}
            current-context: double

            """);
    }

    string ExecPlugin(string directory)
    {
        string script = Path.Combine(directory, "credential-plugin.sh");
        File.WriteAllText(script, "#!/bin/sh\n"
            + $"echo '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{Token}\"}}}}'\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return $"    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {script}\n      interactiveMode: Never";
    }

    /// <summary>What the kubelet mounts in a pod for its service account: token, CA, namespace.</summary>
    public void WriteServiceAccount(string directory, string @namespace)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "token"), Token);
        File.WriteAllText(Path.Combine(directory, "ca.crt"), Authority.ExportCertificatePem());
        File.WriteAllText(Path.Combine(directory, "namespace"), @namespace);
    }

    /// <summary>A client configuration with the token and the CA, as a kubeconfig would give.</summary>
    public KubernetesClientConfiguration Configuration(Uri server) => new()
    {
        Host = server.ToString(),
        AccessToken = Token,
        SslCaCerts = [X509CertificateLoader.LoadCertificate(Authority.RawData)],
    };

    static string Base64(string pem) => Convert.ToBase64String(Encoding.UTF8.GetBytes(pem));
}
