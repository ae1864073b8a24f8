"""One installable distribution: the firmware package, the web UI and the C media engine.

The engine in native/ is compiled through cffi (API mode) into firmware._pbxcore.
"""
from setuptools import find_namespace_packages, setup

setup(
    name="officebox",
    version="0.1.0",
    description="Firmware of a small-office IP-PBX appliance",
    python_requires=">=3.11",
    # data folders (firmware/data, web_ui/templates, static, i18n) are listed as packages too,
    # so that setuptools installs their files with the code in every install mode
    packages=find_namespace_packages(include=["firmware", "firmware.*", "web_ui", "web_ui.*"],
                                     exclude=["*.__pycache__"]),
    package_data={
        "firmware": ["py.typed"],
        "firmware.data": ["*"],
        "web_ui.templates": ["*"],
        "web_ui.static": ["*"],
        "web_ui.static.screenshots": ["*"],
        "web_ui.i18n": ["*"],
    },
    include_package_data=True,
    cffi_modules=["native/build_pbxcore.py:ffibuilder"],
    setup_requires=["cffi>=1.15"],
    install_requires=[
        "cffi>=1.15",
        "pyserial>=3.5",
        "pyVoIP==1.6.8",
        "aiohttp>=3.9",
        "tinydb>=4.8",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-asyncio>=0.23",
            "pytest-timeout>=2.2",
            "pytest-aiohttp>=1.0",
            "hypothesis>=6.100",
            "playwright>=1.40",
            "pjsua2-python==2.15.1.post1",
            "atheris>=2.3",
            "numpy>=1.26",
        ],
    },
    entry_points={"console_scripts": ["officebox=firmware.__main__:main"]},
    zip_safe=False,
)
