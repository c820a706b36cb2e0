; TARA Desktop — offline Windows installer (NSIS 3, Unicode, Modern UI 2).
;
; Built by scripts/build-installer from the PyInstaller onedir bundle (installer/tara.spec):
;
;   makensis -WX -DVERSION=0.1.0 -DBUNDLE_DIR=build\dist\TARA -DMODELS_DIR=build\models\bundled
;            [-DEXTRA_MODELS_DIR=build\models\extra] -DOUTFILE=dist\TARA-0.1.0-Setup.exe installer\tara.nsi
;
;   BUNDLE_DIR        the app: tara.exe, tara-desktop.exe and _internal\ (Python, torch, Qt, llama.cpp, configs)
;   MODELS_DIR        the bundled models: SmolLM2-135M-Instruct.Q4_1.gguf, router\all-MiniLM-L6-v2\,
;                     voice\whisper-tiny.en\, voice\piper\ (component "Models")
;   EXTRA_MODELS_DIR  optional: larger GGUF models present at build time (component "Larger models",
;                     off by default). NSIS keeps everything in one file of at most 2 GB: larger sets
;                     must be shipped beside the installer instead (see scripts/build-installer).
;
; Nothing is downloaded at install time: every file is inside the installer. The install is per user
; (no administrator rights needed), in %LOCALAPPDATA%\Programs\TARA, with a Start-menu entry. The
; uninstaller asks whether to keep or delete the user's profile (%APPDATA%\TARA).

Unicode true
ManifestDPIAware true
RequestExecutionLevel user
; -DCOMPRESSION=zlib for quick compile checks; the release uses solid LZMA (smallest download)
!ifndef COMPRESSION
  !define COMPRESSION "lzma"
!endif
SetCompressor /SOLID ${COMPRESSION}
!if "${COMPRESSION}" == "lzma"
  SetCompressorDictSize 64
!endif

!ifndef VERSION
  !define VERSION "0.0.0"
!endif
!ifndef BUNDLE_DIR
  !error "define BUNDLE_DIR: the PyInstaller bundle folder (build\dist\TARA), e.g. -DBUNDLE_DIR=..."
!endif
!ifndef MODELS_DIR
  !error "define MODELS_DIR: the bundled models folder (build\models\bundled), e.g. -DMODELS_DIR=..."
!endif
!ifndef OUTFILE
  !define OUTFILE "TARA-${VERSION}-Setup.exe"
!endif

!define APP_NAME "TARA"
!define APP_LONG "TARA Desktop"
!define PUBLISHER "TARA project"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\TARA"
!define MODELS_SUBDIR "_internal\models"

Name "${APP_LONG}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\TARA"
InstallDirRegKey HKCU "Software\TARA" "InstallDir"
BrandingText "${APP_LONG} ${VERSION}"

!include "MUI2.nsh"
!include "LogicLib.nsh"

!define MUI_ABORTWARNING
!define MUI_COMPONENTSPAGE_SMALLDESC
!define MUI_FINISHPAGE_RUN "$INSTDIR\tara-desktop.exe"
!define MUI_FINISHPAGE_RUN_TEXT "Start TARA now"

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH

!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES

!insertmacro MUI_LANGUAGE "English"

VIProductVersion "${VERSION}.0"
VIAddVersionKey /LANG=${LANG_ENGLISH} "ProductName" "${APP_LONG}"
VIAddVersionKey /LANG=${LANG_ENGLISH} "FileDescription" "${APP_LONG} installer"
VIAddVersionKey /LANG=${LANG_ENGLISH} "FileVersion" "${VERSION}"
VIAddVersionKey /LANG=${LANG_ENGLISH} "ProductVersion" "${VERSION}"
VIAddVersionKey /LANG=${LANG_ENGLISH} "CompanyName" "${PUBLISHER}"
VIAddVersionKey /LANG=${LANG_ENGLISH} "LegalCopyright" "Apache-2.0"

; ---------------------------------------------------------------------------------------------------------
; Remove everything of an earlier install in _internal except models\ (stale libraries of another
; version must not be loaded by the new one).
Function ClearOldProgramFiles
  Push $R0
  Push $R1
  FindFirst $R0 $R1 "$INSTDIR\_internal\*"
  ${DoWhile} $R1 != ""
    ${If} $R1 != "."
    ${AndIf} $R1 != ".."
    ${AndIf} $R1 != "models"
      ${If} ${FileExists} "$INSTDIR\_internal\$R1\*.*"
        RMDir /r "$INSTDIR\_internal\$R1"
      ${Else}
        Delete "$INSTDIR\_internal\$R1"
      ${EndIf}
    ${EndIf}
    FindNext $R0 $R1
  ${Loop}
  FindClose $R0
  Pop $R1
  Pop $R0
FunctionEnd

Section "TARA (required)" SecCore
  SectionIn RO
  SetOutPath "$INSTDIR"
  ; a reinstall (or update) replaces the program files but keeps the models installed before
  Call ClearOldProgramFiles
  File /r "${BUNDLE_DIR}\*.*"
  ; the third-party notices and licences (also in _internal\), next to the programs where users look
  File "/oname=NOTICES.txt" "${BUNDLE_DIR}\_internal\NOTICES.txt"

  WriteUninstaller "$INSTDIR\Uninstall TARA.exe"
  WriteRegStr HKCU "Software\TARA" "InstallDir" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayName" "${APP_LONG}"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINST_KEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr HKCU "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\tara-desktop.exe"
  WriteRegStr HKCU "${UNINST_KEY}" "UninstallString" '"$INSTDIR\Uninstall TARA.exe"'
  WriteRegStr HKCU "${UNINST_KEY}" "QuietUninstallString" '"$INSTDIR\Uninstall TARA.exe" /S'
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoRepair" 1

  CreateDirectory "$SMPROGRAMS\TARA"
  CreateShortcut "$SMPROGRAMS\TARA\TARA.lnk" "$INSTDIR\tara-desktop.exe" "" "$INSTDIR\tara-desktop.exe" 0
  CreateShortcut "$SMPROGRAMS\TARA\Uninstall TARA.lnk" "$INSTDIR\Uninstall TARA.exe"
SectionEnd

Section "Models (SmolLM2 chat model and voice)" SecModels
  SetOutPath "$INSTDIR\${MODELS_SUBDIR}"
  File /r "${MODELS_DIR}\*.*"
SectionEnd

!ifdef EXTRA_MODELS_DIR
Section /o "Larger models" SecExtraModels
  SetOutPath "$INSTDIR\${MODELS_SUBDIR}"
  File /r "${EXTRA_MODELS_DIR}\*.*"
SectionEnd
!endif

Section "-finish"
  ; the size shown in Apps & features
  SectionGetSize ${SecCore} $0
  SectionGetSize ${SecModels} $1
  IntOp $0 $0 + $1
  WriteRegDWORD HKCU "${UNINST_KEY}" "EstimatedSize" $0
SectionEnd

!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecCore} "The TARA app: chat, voice, routing, training and the tara command."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecModels} "The SmolLM2 135M chat model and the voice models, so TARA answers offline right away."
!ifdef EXTRA_MODELS_DIR
  !insertmacro MUI_DESCRIPTION_TEXT ${SecExtraModels} "Larger language models for better answers (several GB of disk, more RAM)."
!endif
!insertmacro MUI_FUNCTION_DESCRIPTION_END

; ---------------------------------------------------------------------------------------------------------
Section "Uninstall"
  ; Ask about the profile first: deleting it uses tara.exe (which also removes the key from the Windows
  ; Credential Locker), so the program files must still be there.
  StrCpy $0 "keep"
  ${If} ${FileExists} "$APPDATA\TARA\*.*"
    MessageBox MB_YESNO|MB_ICONQUESTION|MB_DEFBUTTON1 \
      "Keep your TARA profile (conversations, settings, trained adapters and models you added)?$\r$\n$\r$\n\
Yes: keep it in $APPDATA\TARA for a later install.$\r$\n\
No: delete it now. This cannot be undone." /SD IDYES IDYES profile_decided
    StrCpy $0 "delete"
    profile_decided:
  ${EndIf}
  ${If} $0 == "delete"
    nsExec::ExecToLog '"$INSTDIR\tara.exe" --profile "$APPDATA\TARA" profile delete --yes'
    Pop $1
    RMDir /r "$APPDATA\TARA"
    ${If} ${FileExists} "$APPDATA\TARA\*.*"
      MessageBox MB_OK|MB_ICONEXCLAMATION "Some files in $APPDATA\TARA could not be deleted (is TARA still running?). Delete that folder by hand." /SD IDOK
    ${EndIf}
  ${EndIf}

  ; program files, shortcuts, registry
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\NOTICES.txt"
  Delete "$INSTDIR\tara.exe"
  Delete "$INSTDIR\tara-desktop.exe"
  Delete "$INSTDIR\Uninstall TARA.exe"
  RMDir "$INSTDIR"
  Delete "$SMPROGRAMS\TARA\TARA.lnk"
  Delete "$SMPROGRAMS\TARA\Uninstall TARA.lnk"
  RMDir "$SMPROGRAMS\TARA"
  DeleteRegKey HKCU "${UNINST_KEY}"
  DeleteRegKey HKCU "Software\TARA"
SectionEnd
