{{/* Names, labels and the few derived values every template shares. */}}

{{- define "trusted-issuer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trusted-issuer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "trusted-issuer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trusted-issuer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trusted-issuer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "trusted-issuer.labels" -}}
helm.sh/chart: {{ include "trusted-issuer.chart" . }}
{{ include "trusted-issuer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: trusted-issuer
{{- end }}

{{- define "trusted-issuer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "trusted-issuer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "trusted-issuer.image" -}}
{{- $repository := required "image.repository is required" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The HSM backend, checked. */}}
{{- define "trusted-issuer.backend" -}}
{{- $backend := .Values.hsm.backend }}
{{- if not (has $backend (list "softhsm" "sgx" "tpm" "pkcs11")) }}
{{- fail (printf "hsm.backend must be softhsm, sgx, tpm or pkcs11, not %q" $backend) }}
{{- end }}
{{- $backend }}
{{- end }}

{{/* The backend's PKCS#11 module path. */}}
{{- define "trusted-issuer.module" -}}
{{- $backend := include "trusted-issuer.backend" . }}
{{- if eq $backend "softhsm" }}
{{- required "hsm.softhsm.module is required" .Values.hsm.softhsm.module }}
{{- else if eq $backend "sgx" }}
{{- required "hsm.sgx.module is required (the path of libp11sgx.so)" .Values.hsm.sgx.module }}
{{- else if eq $backend "tpm" }}
{{- required "hsm.tpm.module is required (the path of libtpm2_pkcs11.so)" .Values.hsm.tpm.module }}
{{- else }}
{{- required "hsm.pkcs11.module is required with hsm.backend=pkcs11 (the path of your PKCS#11 module)" .Values.hsm.pkcs11.module }}
{{- end }}
{{- end }}

{{/* Whether the backend keeps token files on hsm.tokenStorage. */}}
{{- define "trusted-issuer.usesTokenStorage" -}}
{{- if has (include "trusted-issuer.backend" .) (list "softhsm" "sgx" "tpm") }}true{{ end }}
{{- end }}

{{/* Where the token files are mounted in the pod. */}}
{{- define "trusted-issuer.tokenDir" -}}
{{- $backend := include "trusted-issuer.backend" . }}
{{- if eq $backend "sgx" }}
{{- required "hsm.sgx.tokenDir is required" .Values.hsm.sgx.tokenDir }}
{{- else if eq $backend "tpm" }}
{{- required "hsm.tpm.storeDir is required" .Values.hsm.tpm.storeDir }}
{{- else }}
{{- print "/var/lib/trusted-issuer/softhsm" }}
{{- end }}
{{- end }}

{{- define "trusted-issuer.tokenClaimName" -}}
{{- /* Per backend: after a move to sgx, the kept softhsm claim is never mounted for the new token. */}}
{{- default (printf "%s-%s-token" (include "trusted-issuer.fullname" .) (include "trusted-issuer.backend" .)) .Values.hsm.tokenStorage.existingClaim }}
{{- end }}

{{/*
The token profiles, resolved: a JSON list of {name, module, tokenLabel, tokenSerial, secretName, secretKey,
namespaces, clusterIssuers}, sorted by name. Every rule a profile must follow is checked here, so a wrong
value fails the render with a message instead of failing the operator at start-up.
*/}}
{{- define "trusted-issuer.profiles" -}}
{{- $backend := include "trusted-issuer.backend" . }}
{{- $module := include "trusted-issuer.module" . }}
{{- $allowed := list "tokenLabel" "tokenSerial" "module" "pinSecret" "namespaces" "clusterIssuers" "keyQuota" }}
{{- $resolved := list }}
{{- range $name := keys .Values.hsm.tokenProfiles | sortAlpha }}
{{- $profile := get $.Values.hsm.tokenProfiles $name }}
{{- /* A profile set to null is removed (that is how the default profile is dropped). */}}
{{- if not (kindIs "invalid" $profile) }}
{{- if not (kindIs "map" $profile) }}
{{- fail (printf "hsm.tokenProfiles.%s must be a mapping" $name) }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]{0,57}[a-z0-9])?$" $name) }}
{{- fail (printf "hsm.tokenProfiles: %q is not a DNS label of at most 59 characters" $name) }}
{{- end }}
{{- range $key, $_ := $profile }}
{{- if not (has $key $allowed) }}
{{- fail (printf "hsm.tokenProfiles.%s.%s: unknown field (a profile names a pinSecret, never a PIN; allowed: %s)" $name $key (join ", " $allowed)) }}
{{- end }}
{{- end }}
{{- $secret := default dict $profile.pinSecret }}
{{- $label := $profile.tokenLabel }}
{{- $secretName := $secret.name }}
{{- $secretKey := $secret.key }}
{{- if eq $backend "softhsm" }}
{{- $label = default $.Values.hsm.softhsm.tokenLabel $label }}
{{- $secretName = default $.Values.hsm.softhsm.pinSecret.name $secretName }}
{{- $secretKey = default $.Values.hsm.softhsm.pinSecret.userPinKey $secretKey }}
{{- end }}
{{- if and (not $label) (not $profile.tokenSerial) }}
{{- fail (printf "hsm.tokenProfiles.%s: set tokenLabel or tokenSerial" $name) }}
{{- end }}
{{- if not $secretName }}
{{- fail (printf "hsm.tokenProfiles.%s.pinSecret.name: name the existing Secret holding the token's user PIN" $name) }}
{{- end }}
{{- $entry := dict "name" $name "module" (default $module $profile.module) "tokenLabel" (default "" $label) "tokenSerial" (default "" $profile.tokenSerial) "secretName" $secretName "secretKey" (default "user-pin" $secretKey) "clusterIssuers" (ne (toString $profile.clusterIssuers) "false") }}
{{- if kindIs "slice" $profile.namespaces }}
{{- $_ := set $entry "namespaces" $profile.namespaces }}
{{- end }}
{{- if $profile.keyQuota }}
{{- if not (kindIs "map" $profile.keyQuota) }}
{{- fail (printf "hsm.tokenProfiles.%s.keyQuota must be a mapping (perNamespace, namespaces, clusterIssuers)" $name) }}
{{- end }}
{{- $_ := set $entry "keyQuota" $profile.keyQuota }}
{{- end }}
{{- $resolved = append $resolved $entry }}
{{- end }}
{{- end }}
{{- if not $resolved }}
{{- fail "hsm.tokenProfiles: configure at least one token profile" }}
{{- end }}
{{- toJson $resolved }}
{{- end }}

{{- define "trusted-issuer.pinDir" -}}
/var/run/trusted-issuer/pins
{{- end }}

{{/* Where TrustedClusterIssuers' Secrets live (TRUSTED_ISSUER_CLUSTER_RESOURCE_NAMESPACE). */}}
{{- define "trusted-issuer.clusterResourceNamespace" -}}
{{- default .Release.Namespace .Values.operator.clusterResourceNamespace }}
{{- end }}

{{/*
The tpm backend's placement and device access, checked: a JSON object {nodeSelector, resource,
privileged, group}. Keys made by tpm2-pkcs11 are wrapped by this node's TPM and kept in a SQLite store
that one process writes at a time, so every setting that would move the pod, run a second process on
the store, or leave the device unopenable fails the render here, with the reason.
*/}}
{{- define "trusted-issuer.tpm" -}}
{{- $tpm := .Values.hsm.tpm }}
{{- $selector := deepCopy (default dict .Values.nodeSelector) }}
{{- $pinned := get $selector "kubernetes.io/hostname" }}
{{- if and $tpm.nodeName $pinned (ne (toString $pinned) $tpm.nodeName) }}
{{- fail (printf "hsm.tpm.nodeName %q and nodeSelector kubernetes.io/hostname %q disagree: the pod must run on the node whose TPM holds the keys" $tpm.nodeName (toString $pinned)) }}
{{- end }}
{{- if not (or $tpm.nodeName $pinned) }}
{{- fail "hsm.backend=tpm needs hsm.tpm.nodeName (or nodeSelector kubernetes.io/hostname): keys are bound to one node's TPM, so the pod must always run on that node" }}
{{- end }}
{{- $_ := set $selector "kubernetes.io/hostname" (default (toString $pinned) $tpm.nodeName) }}
{{- if ne (int .Values.replicaCount) 1 }}
{{- fail "hsm.backend=tpm needs replicaCount=1: tpm2-pkcs11's SQLite store takes one writer process at a time (a second replica creating keys fails with 'database is locked'), and a standby on the same node would not survive the node's loss anyway" }}
{{- end }}
{{- if kindIs "invalid" $tpm.device.group }}
{{- fail "hsm.tpm.device.group is required: the gid owning the device on the node (stat -c %g /dev/tpmrm0; the tss group where tpm-udev is installed), added to the pod's supplementalGroups so the non-root operator may open it" }}
{{- end }}
{{- $access := $tpm.device.access }}
{{- $resource := "" }}
{{- if eq $access "devicePlugin" }}
{{- $resource = required "hsm.tpm.device.resource is required with access=devicePlugin (the extended resource of a device plugin handing out /dev/tpmrm0, e.g. githedgehog.com/tpmrm)" $tpm.device.resource }}
{{- if $tpm.device.privileged }}
{{- fail "hsm.tpm.device.privileged is for access=hostPath only: a device plugin opens the device cgroup for the device it hands out" }}
{{- end }}
{{- else if eq $access "hostPath" }}
{{- if not $tpm.device.privileged }}
{{- fail "hsm.tpm.device.access=hostPath needs hsm.tpm.device.privileged=true: the container runtime's device cgroup refuses open() of a device bind-mounted into an unprivileged container (kubernetes/kubernetes#79090); prefer access=devicePlugin, which needs no privilege" }}
{{- end }}
{{- else }}
{{- fail (printf "hsm.tpm.device.access must be devicePlugin or hostPath, not %q" (toString $access)) }}
{{- end }}
{{- toJson (dict "nodeSelector" $selector "resource" $resource "privileged" (eq $access "hostPath") "group" (int64 $tpm.device.group)) }}
{{- end }}
